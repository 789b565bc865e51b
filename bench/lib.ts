// Shared benchmark plumbing: start `bun run cluster` as a real process tree, summarise
// latency histograms, print one JSON line per step, sample per-process CPU from /proc.
import * as hdr from "hdr-histogram-js";
import { basename, join } from "node:path";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";

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

// --- per-process CPU, from /proc (Linux only) ---

/** Clock ticks per second of /proc/<pid>/stat CPU times (USER_HZ on Linux). */
export const CLK_TCK = 100;

interface ProcStat {
  pid: number;
  ppid: number;
  /** utime + stime in clock ticks */
  ticks: number;
}

/** The fields of a /proc/…/stat file after comm (state first): comm may hold spaces and parentheses. */
function statFields(path: string): string[] {
  const s = readFileSync(path, "utf8");
  return s.slice(s.lastIndexOf(")") + 2).split(" ");
}

/** utime + stime (clock ticks) from statFields. */
const ticksOf = (f: string[]) => Number(f[11]) + Number(f[12]);

function readStat(pid: number): ProcStat | undefined {
  try {
    const f = statFields(`/proc/${pid}/stat`);
    return { pid, ppid: Number(f[1]), ticks: ticksOf(f) };
  } catch {
    return undefined; // gone meanwhile
  }
}

/** A short name for a process: the role script (`connect`, `logic`…) or the binary's name. */
function procLabel(pid: number): string {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean);
    const script = argv.find((a) => /\.(ts|m?js)$/.test(a));
    // a node of co-located roles (src/bin/node.ts --roles logic,task): "node[logic+task]"
    const roles = argv.indexOf("--roles");
    if (script && basename(script) === "node.ts" && roles > 0) return `node[${(argv[roles + 1] ?? "").split(",").join("+")}]`;
    // redis-server rewrites its argv[0] to "redis-server host:port"
    return script ? basename(script).replace(/\.(ts|m?js)$/, "") : basename((argv[0] ?? "?").split(" ")[0]);
  } catch {
    return "?";
  }
}

/** Every process below `root` (and root itself), by pid. */
export function processTree(root: number): Map<number, string> {
  const children = new Map<number, number[]>();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const st = readStat(Number(name));
    if (!st) continue;
    const list = children.get(st.ppid) ?? [];
    list.push(st.pid);
    children.set(st.ppid, list);
  }
  const out = new Map<number, string>();
  const todo = [root];
  while (todo.length) {
    const pid = todo.pop()!;
    out.set(pid, procLabel(pid));
    todo.push(...(children.get(pid) ?? []));
  }
  return out;
}

export interface CpuSample {
  at: number;
  ticks: Map<number, number>;
}

/** CPU ticks of each process so far. */
export function sampleCpu(pids: Iterable<number>): CpuSample {
  const ticks = new Map<number, number>();
  for (const pid of pids) {
    const st = readStat(pid);
    if (st) ticks.set(pid, st.ticks);
  }
  return { at: performance.now(), ticks };
}

export interface ThreadSample {
  at: number;
  /** pid → (tid → CPU ticks so far) of the threads with the sampled name */
  ticks: Map<number, Map<number, number>>;
}

/** CPU ticks so far of each process's threads named `thread` (e.g. "JITWorker", JavaScriptCore's compiler threads in Bun), from /proc/<pid>/task. */
export function sampleThreads(pids: Iterable<number>, thread: string): ThreadSample {
  const ticks = new Map<number, Map<number, number>>();
  for (const pid of pids) {
    const mine = new Map<number, number>();
    try {
      for (const tid of readdirSync(`/proc/${pid}/task`)) {
        if (readFileSync(`/proc/${pid}/task/${tid}/comm`, "utf8").trim() !== thread) continue;
        mine.set(Number(tid), ticksOf(statFields(`/proc/${pid}/task/${tid}/stat`)));
      }
    } catch {
      // the process or thread is gone meanwhile
    }
    if (mine.size) ticks.set(pid, mine);
  }
  return { at: performance.now(), ticks };
}

export interface WakeupSample {
  /** pid → voluntary context switches so far, summed over its threads (each one a sleep, then a wake-up) */
  all: Map<number, number>;
  /** pid → the same for its main thread alone (a JavaScript process's event loop) */
  main: Map<number, number>;
}

/** voluntary_ctxt_switches of one /proc/…/status file. */
function voluntarySwitches(path: string): number {
  const m = /^voluntary_ctxt_switches:\s*(\d+)/m.exec(readFileSync(path, "utf8"));
  return m ? Number(m[1]) : 0;
}

/**
 * Voluntary context switches so far of each process, from /proc/<pid>/task/<tid>/status. Each is
 * one sleep of a thread and the wake-up that ends it: the per-round cost this VM charges ~50 µs
 * of CPU for (bench/README "The machine"). Threads that ended before the sample are not counted.
 */
export function sampleWakeups(pids: Iterable<number>): WakeupSample {
  const all = new Map<number, number>();
  const main = new Map<number, number>();
  for (const pid of pids) {
    try {
      let sum = 0;
      for (const tid of readdirSync(`/proc/${pid}/task`)) {
        try {
          const n = voluntarySwitches(`/proc/${pid}/task/${tid}/status`);
          sum += n;
          if (Number(tid) === pid) main.set(pid, n);
        } catch {
          // the thread ended meanwhile
        }
      }
      all.set(pid, sum);
    } catch {
      // the process is gone meanwhile
    }
  }
  return { all, main };
}

/**
 * Wake-ups per message between two samples, per label (instances summed), rounded to 0.01:
 * { all: {logic: 3.1, …}, main: {logic: 1.9, …} }. A thread that started in between counts
 * from zero; labels with none are left out.
 */
export function wakeupsPerMessage(a: WakeupSample, b: WakeupSample, labels: Map<number, string>, messages: number): { all: Record<string, number>; main: Record<string, number> } {
  const per = (x: Map<number, number>, y: Map<number, number>) => {
    const out: Record<string, number> = {};
    for (const [pid, n] of y) {
      const before = x.get(pid);
      if (before === undefined) continue;
      const k = labels.get(pid) ?? String(pid);
      out[k] = (out[k] ?? 0) + (n - before);
    }
    for (const [k, v] of Object.entries(out)) {
      if (!v || !messages) delete out[k];
      else out[k] = Math.round((v / messages) * 100) / 100;
    }
    return out;
  };
  return { all: per(a.all, b.all), main: per(a.main, b.main) };
}

/**
 * What cpuBetween gives, for the sampled threads: per process, the CPU of the threads present in
 * both samples (a pool's threads come and go; one that ended in between is not counted).
 */
export function threadCpuBetween(a: ThreadSample, b: ThreadSample, labels: Map<number, string>): Record<string, number[]> {
  const used = new Map<number, number>();
  for (const [pid, threads] of b.ticks) {
    let d = 0;
    for (const [tid, t] of threads) d += t - (a.ticks.get(pid)?.get(tid) ?? t);
    used.set(pid, d);
  }
  // cpuBetween of "nothing" and "what was used": its percentages and per-label grouping.
  return cpuBetween({ at: a.at, ticks: new Map([...used.keys()].map((p) => [p, 0])) }, { at: b.at, ticks: used }, labels);
}

/**
 * CPU use between two samples in percent of one core, per label (several instances of a
 * role are listed in pid order), e.g. {connect:[41,39], logic:[30,28], redis-server:[12]}.
 */
export function cpuBetween(a: CpuSample, b: CpuSample, labels: Map<number, string>): Record<string, number[]> {
  const secs = (b.at - a.at) / 1000;
  const out: Record<string, number[]> = {};
  for (const pid of [...b.ticks.keys()].sort((x, y) => x - y)) {
    const before = a.ticks.get(pid);
    if (before === undefined) continue;
    const pct = Math.round(((b.ticks.get(pid)! - before) / CLK_TCK / secs) * 100);
    (out[labels.get(pid) ?? String(pid)] ??= []).push(pct);
  }
  for (const [k, v] of Object.entries(out)) if (v.every((x) => x === 0)) delete out[k]; // idle helpers (sh, …)
  return out;
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

export interface MachineSample {
  busy: number;
  total: number;
}

/** Machine-wide CPU jiffies from /proc/stat (all cores). */
export function sampleMachine(): MachineSample {
  const f = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
  const idle = f[3] + f[4]; // idle + iowait
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0); // without guest time, already in user
  return { busy: total - idle, total };
}

/** Busy CPU between two machine samples, in percent of one core (2 cores fully busy = 200). */
export function machineBusyPct(a: MachineSample, b: MachineSample, cores: number): number {
  return Math.round(((b.busy - a.busy) / (b.total - a.total)) * cores * 100);
}

/** The 1, 5 and 15 minute load averages of the box (/proc/loadavg). */
export function loadavg(): number[] {
  return readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).map(Number);
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
