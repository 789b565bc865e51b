// IM_HOST=auto: the address this instance advertises is the local address of the interface that
// reaches etcd, found by opening a TCP connection to an etcd endpoint and reading its local end.
// In a container (Docker, Kubernetes) that is the container's own address, so every copy made by
// `docker compose up --scale` or a Deployment advertises itself, not a shared service name.
import { existsSync } from "node:fs";
import { connect, isIP } from "node:net";
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
    const url = endpointUrl(ep);
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

/** An endpoint as a URL: "http://h:2379" and "redis://u:p@h/0" as given, scheme-less "h:2379" or "[::1]:2379" as http://. Throws TypeError if unparsable. */
const endpointUrl = (ep: string): URL => new URL(ep.includes("://") ? ep : `http://${ep}`);

const LOOPBACK_NAMES = new Set(["localhost", "ip6-localhost", "ip6-loopback"]);

/**
 * True if hostOrEndpoint names this machine's loopback: 127.0.0.0/8, ::1 (any spelling, or
 * ::ffff:127.x) or localhost. Accepts a bare host ("::1", "[::1]", "localhost"), a scheme-less
 * "host:port" ("127.0.0.1:2379", "[::1]:2379") or a URL ("redis://u:p@127.0.0.1:6379/0").
 * Anything unparsable counts as not loopback. The one loopback rule: the open-mode check in
 * cluster-auth.ts and the IM_HOST warning in resolveHosts both use it.
 */
export function isLoopback(hostOrEndpoint: string): boolean {
  let h = hostOrEndpoint.trim().toLowerCase();
  if (!isIP(h)) {
    try {
      h = endpointUrl(h).hostname.replace(/^\[|\]$/g, "");
    } catch {
      return false;
    }
  }
  if (LOOPBACK_NAMES.has(h)) return true;
  if (isIP(h) === 4) return h.startsWith("127.");
  // the URL parser writes IPv6 in its shortest form and IPv4-mapped as hex (::ffff:7f00:1)
  if (isIP(h) === 6) return h === "::1" || h === "0:0:0:0:0:0:0:1" || /^::ffff:(127\.|7f[0-9a-f]{2}:)/.test(h);
  return false;
}

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
  const remoteEtcd = config.etcdEndpoints.some((ep) => !isLoopback(ep));
  if (isLoopback(host) && remoteEtcd) {
    warnings.push(`IM_HOST=${host} is a loopback address but etcd is remote: other hosts cannot reach this instance; set IM_HOST (or IM_HOST=auto)`);
  }
  return { host, metricsHost, warnings };
}
