// Per-process and machine-wide CPU, wake-ups and load from /proc (Linux only): what every bench
// step line reports about the processes it measured.
import { basename } from "node:path";
import { readdirSync, readFileSync } from "node:fs";

/** Clock ticks per second of /proc/<pid>/stat CPU times (USER_HZ on Linux). */
export const CLK_TCK = 100;

interface ProcStat {
  pid: number;
  ppid: number;
  /**
   * utime + stime + cutime + cstime in clock ticks: the process's own CPU and that of its
   * children it has reaped, i.e. redis-server's AOF-rewrite forks (a few % of Redis's CPU at
   * 5,000 msgs/s, bench/journal/2026-12-01.md, "1 Dec 2026, 07:06–07:31"), which start after a
   * step's process list was taken and would otherwise count for nobody.
   */
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
    return { pid, ppid: Number(f[1]), ticks: ticksOf(f) + Number(f[13]) + Number(f[14]) };
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
 * one sleep of a thread and the wake-up that ends it (at most ~45–55 µs of CPU on this VM,
 * bench/journal/2026-12-01.md, "1 Dec 2026, 07:06–07:31"). Threads that ended before the sample
 * are not counted.
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
