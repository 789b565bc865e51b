// Micro-benchmark of one task worker at a steady rate. The worker runs in a process of its own
// (bench/task-child.ts), from this tree or from another checkout (--src, for old/new A/B runs in
// one run on the same stores); this process is the producer, appending room messages to the
// partition streams the way logic does (XADD + pending ZADD, a pipeline every 10 ms, one sender
// per room), and the fake connect instances it pushes to (2, or each count of --connects; every
// room is routed to all of them; real gRPC servers registered in etcd,
// test/task-helpers.ts). Stores: the shared test infrastructure (redis-server, mariadbd, etcd in a
// temp folder, stopped at the end).
//
// Per round and source tree: a warm-up (start-up and JIT excluded), then --seconds at --rate,
// measured from the first append to the moment both groups have handled everything. One JSON
// line: CPU µs per message of the task process, redis-server and mariadbd (from /proc; Redis
// includes the producer's XADD/ZADD, the same for every tree), Redis calls per message by command
// (INFO commandstats), MySQL statements, transactions, row writes and fsyncs per message (SHOW
// GLOBAL STATUS), push calls per instance, delivery lag at the fakes.
// Usage: bun bench/task-steady.ts [--rate 1000] [--seconds 10] [--rounds 3] [--partitions 8]
//        [--rooms 100] [--src DIR[,DIR…]] (default: this tree; "." is this tree) [--cpu-prof DIR]
//        [--variants 'JSON;JSON…'] (config overrides, each run with every --src)
//        [--connects 1,2,4,8] (fake connect instances per room, each count run in every round)
import { parseArgs } from "node:util";
import { readdirSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import { roomConv } from "../src/shared/protocol.ts";
import { getInfra, stopSharedInfra } from "../test/support/infra.ts";
import { Scope, uniq, waitFor, type FakeConnect } from "../test/task-helpers.ts";
import { newHistogram, redisCommandStats, redisPerMessage, report, sampleCpu, summary } from "./lib.ts";

const { values: o } = parseArgs({
  options: {
    rate: { type: "string", default: "1000" },
    seconds: { type: "string", default: "10" },
    // seconds; JavaScriptCore's compiler threads stay busy for tens of seconds at 1,000 msgs/s (README)
    warmup: { type: "string", default: "30" },
    rounds: { type: "string", default: "3" },
    partitions: { type: "string", default: "8" },
    rooms: { type: "string", default: "100" },
    src: { type: "string", default: "." },
    /** ;-separated config overrides (JSON; key "env": environment of the task process), each run with every --src, e.g. '{"pushIntervalMs":0};{"pushIntervalMs":10}' */
    variants: { type: "string", default: "{}" },
    "cpu-prof": { type: "string" },
    connects: { type: "string", default: "2" },
  },
});
const RATE = Number(o.rate);
const TICK_MS = 10;
const HERE = resolve(import.meta.dir, "..");
const SOURCES = o.src!.split(",").map((s) => (s === "." ? HERE : resolve(s)));
const MYSQL_COUNTERS = ["Questions", "Com_insert", "Com_select", "Com_commit", "Handler_commit", "Handler_write", "Handler_update", "Innodb_data_fsyncs", "Innodb_log_writes"];

async function mysqlStatus(s: Scope): Promise<Record<string, number>> {
  const [rows] = await s.db.pool.query(`SHOW GLOBAL STATUS WHERE Variable_name IN (${MYSQL_COUNTERS.map(() => "?").join(",")})`, MYSQL_COUNTERS);
  return Object.fromEntries((rows as { Variable_name: string; Value: string }[]).map((r) => [r.Variable_name, Number(r.Value)]));
}

const ticksOf = (pid: number) => sampleCpu([pid]).ticks.get(pid) ?? 0;
/** CPU ticks per thread name of a process (/proc/PID/task/TID: comm and utime + stime). */
function threads(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const st = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
      const name = st.slice(st.indexOf("(") + 1, st.lastIndexOf(")"));
      const f = st.slice(st.lastIndexOf(")") + 2).split(" ");
      out.set(name, (out.get(name) ?? 0) + Number(f[11]) + Number(f[12]));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}
/** utime and stime of a process in clock ticks (user space, kernel). */
function userSys(pid: number): [number, number] {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return [Number(f[11]), Number(f[12])];
}

/** Appends at RATE for ms, then waits until both groups have handled everything; returns the count. */
async function produce(s: Scope, rooms: string[], senders: { userId: number; userName: string }[], fakes: FakeConnect[], ms: number, start: number): Promise<number> {
  const body = "x".repeat(64);
  let sent = 0;
  const t0 = performance.now();
  const want = fakes.map((f) => f.received.length);
  await new Promise<void>((done) => {
    const iv = setInterval(() => {
      // Paced by the clock, not by the number of ticks: a loaded box runs fewer of them.
      const n = Math.round((Math.min(ms, performance.now() - t0) * RATE) / 1000) - sent;
      const items = Array.from({ length: Math.max(0, n) }, (_, i) => {
        const r = (start + sent + i) % rooms.length;
        return { conv: roomConv(rooms[r]), from: senders[r], body };
      });
      sent += items.length;
      if (items.length) void s.sendBulk(items);
      if (performance.now() - t0 >= ms) {
        clearInterval(iv);
        done();
      }
    }, TICK_MS);
  });
  await waitFor(() => fakes.every((f, i) => f.received.length - want[i] >= sent), 60_000, "pushed");
  await waitFor(() => s.groupDone("persist"), 60_000, "persisted");
  await waitFor(() => s.groupDone("push"), 60_000, "push acked");
  return sent;
}

async function round(src: string, variant: Record<string, unknown>, no: number, connects: number): Promise<void> {
  const partitions = Number(o.partitions);
  const { env: childEnv = {}, ...overrides } = variant as { env?: Record<string, string> };
  const s = await Scope.create({ streamPartitions: partitions, ...overrides });
  const infra = await getInfra();
  let child: Bun.Subprocess<"ignore", "pipe", "inherit"> | undefined;
  try {
    const fakes: FakeConnect[] = [];
    for (let i = 0; i < connects; i++) fakes.push(await s.connect());
    const rooms = Array.from({ length: Number(o.rooms) }, () => uniq("b"));
    const senders = rooms.map((_, i) => ({ userId: 1_000_000 + no * 10_000 + i, userName: `s${i}` }));
    for (const r of rooms) await s.redis.hset(s.keys.roomInstances(r), ...fakes.flatMap((f) => [f.id, 1]));
    const env: Record<string, string> = { ...process.env, TASK_SRC: src, TASK_CONFIG: JSON.stringify(s.config), ...childEnv } as Record<string, string>;
    if (o["cpu-prof"]) env.BUN_OPTIONS = `--cpu-prof --cpu-prof-dir=${resolve(o["cpu-prof"], `${no}-${src.split("/").pop()}-c${connects}`)}`;
    child = Bun.spawn([process.execPath, `${import.meta.dir}/task-child.ts`], { env, stdin: "ignore", stdout: "pipe", stderr: "inherit" });
    const reader = child.stdout.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    if (!first.includes("ready")) throw new Error(`task child did not start: ${first}`);
    await produce(s, rooms, senders, fakes, Number(o.warmup) * 1000, 0);
    const pids = { task: child.pid, redis: infra.redis.pid!, mariadb: infra.mysql.pid! };
    const calls0 = fakes[0].calls;
    const lagFrom = fakes.map((f) => f.lags.length);
    const [cmd0, my0] = [await redisCommandStats(infra.ports.redis), await mysqlStatus(s)];
    const cpu0 = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, ticksOf(p)]));
    const us0 = userSys(child.pid);
    const th0 = threads(child.pid);
    const self0 = process.cpuUsage();
    const t0 = performance.now();
    const from = Date.now();
    const sent = await produce(s, rooms, senders, fakes, Number(o.seconds) * 1000, 7);
    const ms = performance.now() - t0;
    const cpu1 = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, ticksOf(p)]));
    const us1 = userSys(child.pid);
    const th1 = threads(child.pid);
    const self = process.cpuUsage(self0);
    const [cmd1, my1] = [await redisCommandStats(infra.ports.redis), await mysqlStatus(s)];
    const usPerMsg = Object.fromEntries(Object.keys(pids).map((k) => [k, Math.round(((cpu1[k] - cpu0[k]) * 10_000) / sent)]));
    const mysql = Object.fromEntries(MYSQL_COUNTERS.map((k) => [k, Math.round(((my1[k] - my0[k]) / sent) * 1000) / 1000]));
    const lag = newHistogram();
    for (const [i, f] of fakes.entries()) for (const l of f.lags.slice(lagFrom[i])) lag.recordValue(Math.max(1, l * 1000));
    report({
      src: src === HERE ? "this tree" : src,
      config: variant,
      round: no,
      partitions,
      connects,
      targetRate: RATE,
      messages: sent,
      seconds: Math.round(ms) / 1000,
      /** Epoch ms of the measured part, for bench/profile-summary.ts --from --to. */
      window: { from, to: Date.now() },
      cpuUsPerMsg: { ...usPerMsg, bench: Math.round((self.user + self.system) / sent) },
      /** The task process's CPU per message in user space and in the kernel (syscalls, wake-ups). */
      taskUserSysUs: [Math.round(((us1[0] - us0[0]) * 10_000) / sent), Math.round(((us1[1] - us0[1]) * 10_000) / sent)],
      /** The task process's CPU per message by thread name (JS runs on the main one, "bun"). */
      taskThreadsUs: Object.fromEntries([...th1].map(([k, v]) => [k, Math.round(((v - (th0.get(k) ?? 0)) * 10_000) / sent)]).filter(([, v]) => (v as number) > 0)),
      cpuPct: Object.fromEntries(Object.keys(pids).map((k) => [k, Math.round(((cpu1[k] - cpu0[k]) * 1000) / ms)])),
      mysqlPerMsg: mysql,
      redisPerMsg: redisPerMessage(cmd0, cmd1, sent),
      pushCallsPerInstancePerMsg: Math.round(((fakes[0].calls - calls0) / sent) * 1000) / 1000,
      lagMs: summary(lag),
    });
  } finally {
    if (child) {
      child.kill("SIGTERM");
      await Promise.race([child.exited, Bun.sleep(10_000)]);
      child.kill("SIGKILL");
    }
    await s.close();
  }
}

try {
  const variants = o.variants!.split(";").map((v) => JSON.parse(v) as Record<string, unknown>);
  const counts = o.connects!.split(",").map(Number);
  if (!counts.every((n) => Number.isInteger(n) && n >= 1)) throw new Error(`--connects wants counts >= 1, got ${o.connects}`);
  for (let r = 1; r <= Number(o.rounds); r++) for (const src of SOURCES) for (const v of variants) for (const n of counts) await round(src, v, r, n);
} finally {
  await stopSharedInfra();
}
process.exit(0);
