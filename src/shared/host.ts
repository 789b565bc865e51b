// IM_HOST=auto: the address this instance advertises is the local address of the interface that
// reaches etcd, found by opening a TCP connection to an etcd endpoint and reading its local end.
// In a container (Docker, Kubernetes) that is the container's own address, so every copy made by
// `docker compose up --scale` or a Deployment advertises itself, not a shared service name.
import { existsSync } from "node:fs";
import { connect } from "node:net";
import { AUTO_HOST } from "./config.ts";

const CONNECT_TIMEOUT_MS = 3000;

/** True inside Docker/Podman or a Kubernetes pod: there an unset IM_HOST means "auto". */
export function inContainer(env: Record<string, string | undefined>): boolean {
  return !!env.KUBERNETES_SERVICE_HOST || existsSync("/.dockerenv") || existsSync("/run/.containerenv");
}

/** The local address of a TCP connection to the first etcd endpoint that accepts one. Throws naming every endpoint tried. */
export async function addressTowards(endpoints: readonly string[]): Promise<string> {
  const problems: string[] = [];
  for (const ep of endpoints) {
    const url = new URL(ep.includes("://") ? ep : `http://${ep}`);
    const port = Number(url.port || (url.protocol === "https:" ? 443 : 80));
    const host = url.hostname.replace(/^\[|\]$/g, "");
    try {
      return await new Promise<string>((resolve, reject) => {
        const sock = connect({ host, port, timeout: CONNECT_TIMEOUT_MS });
        sock.once("connect", () => {
          const addr = sock.localAddress;
          sock.destroy();
          addr ? resolve(addr.replace(/^::ffff:/, "")) : reject(new Error("no local address"));
        });
        sock.once("timeout", () => {
          sock.destroy();
          reject(new Error("timeout"));
        });
        sock.once("error", reject);
      });
    } catch (e) {
      problems.push(`${host}:${port}: ${(e as Error).message}`);
    }
  }
  throw new Error(`IM_HOST=auto: no etcd endpoint reachable to find this host's address (${problems.join("; ")})`);
}

const isLoopback = (h: string) => h === "localhost" || h === "::1" || h.startsWith("127.");

/**
 * Resolves "auto" host values (IM_HOST, IM_METRICS_HOST) to an address; others pass through.
 * warnings: an advertised loopback address with a non-loopback etcd (other machines would be
 * told to dial themselves).
 */
export async function resolveHosts<T extends { host: string; metricsHost: string; etcdEndpoints: readonly string[] }>(
  config: T,
): Promise<{ host: string; metricsHost: string; warnings: string[] }> {
  const needs = config.host === AUTO_HOST || config.metricsHost === AUTO_HOST;
  const auto = needs ? await addressTowards(config.etcdEndpoints) : "";
  const host = config.host === AUTO_HOST ? auto : config.host;
  const metricsHost = config.metricsHost === AUTO_HOST ? auto : config.metricsHost;
  const warnings: string[] = [];
  const remoteEtcd = config.etcdEndpoints.some((ep) => !isLoopback(new URL(ep.includes("://") ? ep : `http://${ep}`).hostname));
  if (isLoopback(host) && remoteEtcd) {
    warnings.push(`IM_HOST=${host} is a loopback address but etcd is remote: other hosts cannot reach this instance; set IM_HOST (or IM_HOST=auto)`);
  }
  return { host, metricsHost, warnings };
}
