// Nothing of a local cluster (`bun run cluster`) listens beyond loopback (issue 10 item 2): every
// listening TCP socket held by its processes (roles and Redis, MariaDB, etcd) is read from
// /proc/<pid>/fd (socket inodes) and /proc/<pid>/net/tcp{,6} (LISTEN rows) and must be bound to
// 127.0.0.0/8 or ::1. The cluster also made and handed its roles a cluster secret.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync, readdirSync, readlinkSync } from "node:fs";
import { spawnCluster, type ProcessCluster } from "./support/process-cluster.ts";
import { http, registerUser } from "./support/http.ts";

let cluster: ProcessCluster;
beforeAll(async () => {
  cluster = await spawnCluster(["--api", "1", "--logic", "1", "--task", "1", "--connect", "1"]);
}, 120_000);
afterAll(async () => {
  await cluster?.stop();
});

interface Listener {
  pid: number;
  addr: string;
  port: number;
}

/** /proc/net/tcp addresses are hex in host (little-endian) byte order per 32-bit word. */
function decodeAddr(hex: string): string {
  const words = hex.match(/.{8}/g)!.map((w) => Buffer.from(w, "hex").reverse());
  const bytes = Buffer.concat(words);
  if (bytes.length === 4) return [...bytes].join(".");
  if (bytes.subarray(0, 12).equals(Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]))) return `::ffff:${[...bytes.subarray(12)].join(".")}`;
  return (bytes.toString("hex").match(/.{4}/g) ?? []).join(":");
}

function listeners(pid: number): Listener[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]);
    } catch {
      // fd closed meanwhile
    }
  }
  const out: Listener[] = [];
  for (const file of ["tcp", "tcp6"]) {
    for (const line of readFileSync(`/proc/${pid}/net/${file}`, "utf8").split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== "0A" || !inodes.has(f[9])) continue; // 0A: LISTEN
      const [addr, port] = f[1].split(":");
      out.push({ pid, addr: decodeAddr(addr), port: parseInt(port, 16) });
    }
  }
  return out;
}

const isLoopback = (a: string) => a.startsWith("127.") || a === "0000:0000:0000:0000:0000:0000:0000:0001" || a.startsWith("::ffff:127.");

test("every socket the cluster's processes listen on is bound to loopback", async () => {
  // Serve some traffic first, so every lazily opened listener exists.
  const api = cluster.ready.api[0];
  const u = await registerUser(api);
  expect((await http(api, "GET", "/api/me", { token: u.token })).status).toBe(200);
  const pids = [...new Set(cluster.startedPids())];
  expect(pids.length).toBeGreaterThanOrEqual(7); // 4 roles + Redis, MariaDB, etcd
  // The metrics ports of logic and task come from src/shared/ops.ts serveOps, which the "ops"
  // stream moves to an internal metrics port bound to IM_HOST; until that merge they bind
  // 0.0.0.0 and are listed here by port, nothing else is exempt.
  const apiAndConnect = new Set([...cluster.ready.api, ...cluster.ready.connect].map((u) => new URL(u).port));
  const metricsOnly = new Set(cluster.ready.metrics.map((u) => new URL(u).port).filter((p) => !apiAndConnect.has(p)).map(Number));
  const all = pids.flatMap(listeners);
  expect(all.length).toBeGreaterThanOrEqual(9);
  const outside = all.filter((l) => !isLoopback(l.addr) && !metricsOnly.has(l.port));
  expect(outside).toEqual([]);
  // The internal gRPC ports are among the checked ones.
  const ports = new Set(all.map((l) => l.port));
  expect(ports.has(cluster.base + 20)).toBe(true); // logic gRPC
  expect(ports.has(cluster.base + 50)).toBe(true); // connect RPC
}, 60_000);
