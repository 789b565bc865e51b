// Shared benchmark plumbing: start `bun run cluster` as a real process tree, summarise
// latency histograms, print one JSON line per step, scrape Prometheus and Redis stats; re-exports
// proc.ts (CPU, wake-ups and load from /proc).
import * as hdr from "hdr-histogram-js";
import { join } from "node:path";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { freePort } from "../src/infra/ports.ts";
import { redisPing } from "../src/infra/redis.ts";

export * from "./proc.ts";

export const ROOT = join(import.meta.dir, "..");

export interface Ready {
  api: string[];
  connect: string[];
  metrics: string[];
}

export interface RunningCluster extends Ready {
  pid: number;
  stop(): Promise<void>;
}

const READY_TIMEOUT_MS = 180_000;
const STOP_TIMEOUT_MS = 30_000;

/**
 * Starts the local cluster (real redis, mariadb, etcd and every role as processes) in a temp
 * data dir, from the source tree `root` (default this one). Its stdout is drained for the whole
 * run (a full pipe would block the cluster); if it does not get ready in time it is stopped
 * before the error is thrown.
 */
export async function startCluster(args: string[], env: Record<string, string> = {}, root = ROOT): Promise<RunningCluster> {
  const dataDir = mkdtempSync(join(tmpdir(), "bunchat-bench-"));
  const proc = Bun.spawn(["bun", "src/bin/cluster.ts", "--data-dir", dataDir, ...args], {
    cwd: root,
    // Every bench client comes from 127.0.0.1: lift the per-address login/registration limit.
    env: { ...process.env, IM_LOG_LEVEL: "warn", IM_AUTH_ADDR_LIMIT: "1000000000", ...env },
    stdout: "pipe",
    stderr: process.env.BENCH_VERBOSE ? "inherit" : "ignore",
  });
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill("SIGTERM");
      const timer = setTimeout(() => proc.kill("SIGKILL"), STOP_TIMEOUT_MS);
      await proc.exited;
      clearTimeout(timer);
    }
    rmSync(dataDir, { recursive: true, force: true });
  };
  let resolveReady!: (r: Ready) => void;
  const ready = new Promise<Ready>((res) => (resolveReady = res));
  // Reads stdout until the cluster exits: the ready line resolves `ready`, later output is dropped.
  const drain = (async () => {
    const decoder = new TextDecoder();
    let buf = "";
    let found = false;
    for await (const chunk of proc.stdout) {
      if (found) continue;
      buf += decoder.decode(chunk, { stream: true });
      const line = buf.split("\n").find((l) => l.includes('"event":"ready"'));
      if (line) {
        found = true;
        resolveReady(JSON.parse(line) as Ready);
      }
    }
  })();
  let timer: Timer | undefined;
  const failed = Symbol();
  const outcome = await Promise.race([
    ready,
    drain.then(() => failed),
    new Promise<symbol>((res) => (timer = setTimeout(() => res(failed), READY_TIMEOUT_MS))),
  ]);
  clearTimeout(timer);
  if (outcome === failed) {
    const code = proc.exitCode;
    await stop();
    throw new Error(code === null ? "cluster not ready in time" : `cluster exited with ${code} before ready`);
  }
  return { ...(outcome as Ready), pid: proc.pid, stop };
}

export function newHistogram(): hdr.Histogram {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: 3 });
}

/** p50/p90/p99/p999/max in ms from a histogram recorded in microseconds. */
export function summary(h: hdr.Histogram) {
  const ms = (v: number) => Math.round(v / 10) / 100;
  return {
    p50: ms(h.getValueAtPercentile(50)),
    p90: ms(h.getValueAtPercentile(90)),
    p99: ms(h.getValueAtPercentile(99)),
    p999: ms(h.getValueAtPercentile(99.9)),
    max: ms(h.maxValue),
    count: h.totalCount,
  };
}

export function report(line: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify(line) + "\n");
}

export function freeBasePort(): number {
  // Below the ephemeral range (32768+), where the bench's own client sockets could take a port first.
  return 20000 + Math.floor(Math.random() * 120) * 100;
}

/**
 * A throwaway redis-server for a micro-benchmark: no persistence (`--save '' --appendonly no`),
 * on 127.0.0.1 and a free port; resolves once it answers PING (throws after 10 s). stop() kills
 * exactly that process: call it on every way out, SIGINT and SIGTERM included.
 */
export async function startScratchRedis(): Promise<{ port: number; stop: () => void }> {
  const port = await freePort();
  const srv = Bun.spawn(["redis-server", "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdout: "ignore" });
  const stop = () => srv.kill();
  const until = Date.now() + 10_000;
  while (!(await redisPing(port))) {
    if (Date.now() > until) {
      stop();
      throw new Error("redis-server did not start");
    }
    await Bun.sleep(50);
  }
  return { port, stop };
}

/** Sum of the samples of one Prometheus metric (all label sets) in a text exposition. */
export function promSum(text: string, metric: string): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(metric)) continue;
    const rest = line.slice(metric.length);
    if (rest[0] !== " " && rest[0] !== "{") continue;
    const v = Number(line.slice(line.lastIndexOf(" ") + 1));
    if (Number.isFinite(v)) sum += v;
  }
  return sum;
}

/** Sum of a metric over many /metrics endpoints; unreachable ones count as 0 and are named. */
export async function scrapeSum(bases: string[], metric: string): Promise<{ sum: number; failed: string[] }> {
  const failed: string[] = [];
  const values = await Promise.all(
    bases.map(async (b) => {
      try {
        const r = await fetch(`${b.replace(/\/+$/, "").replace(/\/metrics$/, "")}/metrics`, { signal: AbortSignal.timeout(3000) });
        return r.ok ? promSum(await r.text(), metric) : (failed.push(b), 0);
      } catch {
        failed.push(b);
        return 0;
      }
    }),
  );
  return { sum: values.reduce((x, y) => x + y, 0), failed };
}

/** Calls and server-side µs per Redis command so far (INFO commandstats), by command name. */
export async function redisCommandStats(port: number): Promise<Record<string, { calls: number; usec: number }>> {
  const p = Bun.spawn(["redis-cli", "-p", String(port), "INFO", "commandstats"], { stdout: "pipe", stderr: "ignore" });
  const text = await new Response(p.stdout).text();
  await p.exited;
  const out: Record<string, { calls: number; usec: number }> = {};
  for (const m of text.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) out[m[1]] = { calls: Number(m[2]), usec: Number(m[3]) };
  return out;
}

/** Per accepted message: Redis calls and server µs per command between two commandstats samples. */
export function redisPerMessage(a: Record<string, { calls: number; usec: number }>, b: Record<string, { calls: number; usec: number }>, messages: number) {
  const out: Record<string, { calls: number; us: number }> = {};
  if (!messages) return out;
  for (const [k, v] of Object.entries(b)) {
    const calls = v.calls - (a[k]?.calls ?? 0);
    if (calls <= 0) continue;
    out[k] = { calls: Math.round((calls / messages) * 1000) / 1000, us: Math.round(((v.usec - (a[k]?.usec ?? 0)) / messages) * 10) / 10 };
  }
  return out;
}

/**
 * Runs a bare Bun.serve baseline from source `src` (which must print its port on its first stdout
 * line) in its own Bun process; throws (having stopped it) if it prints no port.
 */
export async function spawnBaseline(src: string): Promise<{ pid: number; port: number; stop: () => Promise<void> }> {
  const proc = Bun.spawn([process.execPath, "-e", src], { stdout: "pipe" });
  const stop = async () => {
    proc.kill();
    await proc.exited;
  };
  const { value } = await proc.stdout.getReader().read();
  const port = Number(new TextDecoder().decode(value).trim());
  if (!port) {
    await stop();
    throw new Error("baseline server did not print its port");
  }
  return { pid: proc.pid, port, stop };
}

/** What withBaselineAndCluster hands its body. */
export interface HttpBenchSetup {
  baseline: { pid: number; port: number };
  cluster: RunningCluster;
  /** The cluster's api URL. */
  api: string;
  /** A user registered on the cluster for this run (password "bench-password"). */
  user: { token: string; userName: string };
}

/**
 * The HTTP benches' frame: a bare Bun.serve baseline (spawnBaseline(baselineSrc)) and a
 * `bun run cluster` of one instance per role (env: extra IM_* settings; clusterArgs: more of its
 * flags, e.g. `--colocate-roles api,logic`) with one registered user; runs body, then stops both,
 * also on error and on SIGINT/SIGTERM.
 */
export async function withBaselineAndCluster<T>(
  baselineSrc: string,
  env: Record<string, string>,
  body: (s: HttpBenchSetup) => Promise<T>,
  clusterArgs: string[] = [],
): Promise<T> {
  const baseline = await spawnBaseline(baselineSrc);
  let cluster: RunningCluster | undefined;
  const stopAll = async () => {
    await cluster?.stop();
    await baseline.stop();
  };
  for (const sig of ["SIGINT", "SIGTERM"] as const) process.on(sig, () => void stopAll().finally(() => process.exit(130)));
  try {
    cluster = await startCluster(["--base-port", String(freeBasePort()), "--api", "1", "--logic", "1", "--task", "1", "--connect", "1", ...clusterArgs], env);
    const api = cluster.api[0];
    const user = await fetch(`${api}/api/users`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ userName: `bench${Date.now().toString(36)}`, password: "bench-password" }),
    }).then((r) => r.json() as Promise<{ token: string; userName: string }>);
    return await body({ baseline, cluster, api, user });
  } finally {
    await stopAll();
  }
}
