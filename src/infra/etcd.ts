// A single-member etcd (v3 API) with its own data folder; every URL is set because the
// defaults (2379/2380) must not be used.
import { findBinary } from "./binaries.ts";
import type { ServiceSpec } from "./service.ts";

export function etcdSpec(opts: { port: number; peerPort: number; dir: string }): ServiceSpec {
  const client = `http://127.0.0.1:${opts.port}`;
  const peer = `http://127.0.0.1:${opts.peerPort}`;
  return {
    name: "etcd",
    port: opts.port,
    readyTimeoutMs: 30_000,
    stopTimeoutMs: 10_000,
    command: () => [
      findBinary(["etcd"], "etcd-server"),
      // The member name is fixed: a restart on the same data folder must find itself.
      "--name", "bunchat",
      "--data-dir", opts.dir,
      "--listen-client-urls", client,
      "--advertise-client-urls", client,
      "--listen-peer-urls", peer,
      "--initial-advertise-peer-urls", peer,
      "--initial-cluster", `bunchat=${peer}`,
      "--initial-cluster-state", "new",
      "--logger=zap",
      "--log-outputs=stderr",
    ],
    ready: async () => {
      try {
        const res = await fetch(`${client}/health`, { signal: AbortSignal.timeout(1000) });
        return res.ok && ((await res.json()) as { health?: string }).health === "true";
      } catch {
        return false; // not listening yet
      }
    },
  };
}
