// End-to-end room messaging under stepped send rates: WebSocket clients spread over every
// connect instance of `bun run cluster`, each in one room of --room-size connections (distinct
// users), sending paced messages and timing each delivery. The same load runs first against a
// bare single-process Bun pub/sub server (bench/baseline-pubsub.ts) as the ceiling.
//
// The same load also runs against Socket.IO on Node (bench/socketio-server.mjs, two processes and
// the Redis streams adapter), the peer the issue compares with.
//
// One JSON line per step on stdout: accepted msgs/s, deliveries/s, send→receive latency, lost
// deliveries (every room member, the sender included, must get each accepted message), errors by
// code, CPU per process during the sending window (% of a core, and µs per accepted message), the
// box's load average, and (bunchat) the persist group's rows/s. A human line per step and a
// summary table at the end go to stderr.
// Usage: bun bench/messaging.ts [--clients 1000] [--room-size 10] [--senders 100]
//        [--rates 1000,2500,5000,7500,10000] [--seconds 10] [--warmup-rate 1000] [--warmup-seconds 60]
//        [--target all|both|baseline,bunchat,socketio] [--cpu-prof DIR]   (see `options` below)
import { parseArgs } from "node:util";
import { availableParallelism } from "node:os";
import { cpuBetween, loadavg, machineBusyPct, processTree, redisCommandStats, redisPerMessage, report, sampleCpu, sampleMachine, sampleThreads, sampleWakeups, summary, threadCpuBetween, wakeupsPerMessage } from "./lib.ts";
import { type Cleanups, startBaseline, startBunchat, startSocketIo, type Target } from "./messaging-targets.ts";
import { LoadGen, type Step } from "./ws-load.ts";

const { values: o } = parseArgs({
  options: {
    clients: { type: "string", default: "1000" },
    users: { type: "string", default: "100" },
    "room-size": { type: "string", default: "10" },
    /** clients that send, spread evenly over the rooms (clients 0, n/S, 2n/S, …); the rest only receive */
    senders: { type: "string", default: "100" },
    rates: { type: "string", default: "1000,2500,5000,7500,10000" },
    seconds: { type: "string", default: "10" },
    "warmup-rate": { type: "string", default: "1000" },
    /**
     * 60: JavaScriptCore's compiler threads stay busy for 40-60 s at 1,000 msgs/s (up to 13 % of a
     * core per role); a shorter warm-up charges start-up compilation to the first steps (jitCpuPct)
     */
    "warmup-seconds": { type: "string", default: "60" },
    /** upper bound on the wait for late replies and deliveries after each step */
    drain: { type: "string", default: "3" },
    "body-bytes": { type: "string", default: "64" },
    /** all = baseline,bunchat,socketio; both = baseline,bunchat; or a comma list */
    target: { type: "string", default: "all" },
    /** processes of the Socket.IO peer */
    "socketio-instances": { type: "string", default: "2" },
    "p99-ms": { type: "string", default: "50" },
    api: { type: "string", default: "1" },
    logic: { type: "string", default: "1" },
    task: { type: "string", default: "1" },
    connect: { type: "string", default: "2" },
    "base-port": { type: "string" },
    /** co-located roles: "all" (bun run cluster --colocate) or a list, e.g. logic,task (--colocate-roles) */
    colocate: { type: "string" },
    /** extra IM_* settings for the cluster's roles, e.g. --im IM_STREAM_PARTITIONS=2 (repeatable) */
    im: { type: "string", multiple: true, default: [] },
    /** profile every Bun process of the cluster (BUN_OPTIONS); written on their exit */
    "cpu-prof": { type: "string" },
  },
});
const num = (k: keyof typeof o) => Number(o[k]);
const CLIENTS = num("clients");
const USERS = num("users");
const ROOM_SIZE = num("room-size");
const RATES = String(o.rates).split(",").map(Number);
const SECONDS = num("seconds");
const DRAIN_MS = num("drain") * 1000;
const P99_MS = num("p99-ms");
const SENDERS = num("senders");
const TARGETS = o.target === "all" ? ["baseline", "bunchat", "socketio"] : o.target === "both" ? ["baseline", "bunchat"] : String(o.target).split(",");
for (const t of TARGETS) if (!["baseline", "bunchat", "socketio"].includes(t)) throw new Error(`unknown --target ${t}`);
if (USERS < ROOM_SIZE) throw new Error("--users must be at least --room-size (a room holds distinct users)");
if (CLIENTS % ROOM_SIZE) throw new Error("--clients must be a multiple of --room-size");

const runId = Date.now().toString(36);

// Everything started is stopped in reverse order, on success, error or a signal.
const cleanups: Cleanups = [];
async function cleanup() {
  while (cleanups.length) {
    try {
      await cleanups.pop()!();
    } catch (e) {
      process.stderr.write(`cleanup: ${e}\n`);
    }
  }
}
for (const sig of ["SIGINT", "SIGTERM"] as const)
  process.on(sig, () => {
    process.stderr.write(`${sig}: stopping\n`);
    void cleanup().finally(() => process.exit(130));
  });

interface StepResult {
  step: number | "warmup";
  targetRate: number;
  acceptedPerSec: number;
  deliveriesPerSec: number;
  latencyMs: ReturnType<typeof summary>;
  lost: number;
  /** CPU µs per accepted message, per process label (instances summed) */
  cpuUsPerMsg: Record<string, number>;
  ok: boolean;
}

async function runLoad(t: Target): Promise<StepResult[]> {
  const gen = new LoadGen({ roomSize: ROOM_SIZE, bodyBytes: num("body-bytes"), runId, transport: t.transport, senders: SENDERS });
  cleanups.push(() => gen.close());
  const t0 = performance.now();
  await gen.open(CLIENTS, t.wsUrl, 50);
  const opened = performance.now();
  await gen.joinAll(50);
  report({ event: "clients", target: t.name, clients: CLIENTS, rooms: CLIENTS / ROOM_SIZE, roomSize: ROOM_SIZE, senders: SENDERS, openSec: Math.round(opened - t0) / 1000, joinSec: Math.round(performance.now() - opened) / 1000 });
  await Bun.sleep(1000);

  const labels = new Map(t.pids.flatMap((pid) => [...processTree(pid)]));
  const plan: [number | "warmup", number, number][] = [["warmup", num("warmup-rate"), num("warmup-seconds")], ...RATES.map((r, i) => [i + 1, r, SECONDS] as [number, number, number])];
  const results: StepResult[] = [];
  const steps: Step[] = [];
  let stepNo = 0;
  for (const [step, rate, seconds] of plan) {
    const rows0 = t.persisted ? await t.persisted() : 0;
    const rowsAt0 = performance.now();
    const redis0 = t.redisPort ? await redisCommandStats(t.redisPort) : undefined;
    const cpu0 = sampleCpu(labels.keys());
    const jit0 = sampleThreads(labels.keys(), "JITWorker");
    const wake0 = sampleWakeups(labels.keys());
    const self0 = process.cpuUsage();
    const m0 = sampleMachine();
    const startedAt = Date.now();
    const st = await gen.pace(++stepNo, rate, seconds);
    steps.push(st);
    const cpu1 = sampleCpu(labels.keys());
    const jit1 = sampleThreads(labels.keys(), "JITWorker");
    const wake1 = sampleWakeups(labels.keys());
    const self1 = process.cpuUsage(self0);
    const m1 = sampleMachine();
    const endedAt = Date.now();
    const sendSecs = (cpu1.at - cpu0.at) / 1000;
    const redis1 = t.redisPort ? await redisCommandStats(t.redisPort) : undefined;
    await gen.drain(st, DRAIN_MS);
    const acc = gen.settle(st);
    const persisted = t.persisted ? (await t.persisted()) - rows0 : undefined;
    const rowsSecs = (performance.now() - rowsAt0) / 1000;
    const latencyMs = summary(st.latency);
    const cpuPct = cpuBetween(cpu0, cpu1, labels);
    const benchPct = Math.round(((self1.user + self1.system) / 1e6 / sendSecs) * 100);
    const ours = benchPct + Object.values(cpuPct).flat().reduce((a, b) => a + b, 0);
    const errors = { ...st.errors, ...(acc.unacked ? { unacked: acc.unacked } : {}) };
    const accepted = st.acked / seconds;
    const cpuUsPerMsg = Object.fromEntries(
      Object.entries(cpuPct).map(([k, v]) => [k, accepted ? Math.round((v.reduce((a, b) => a + b, 0) * 10_000) / accepted) : 0]),
    );
    const r = {
      target: t.name,
      step,
      targetRate: rate,
      sentPerSec: Math.round(st.sent / seconds),
      acceptedPerSec: Math.round(st.acked / seconds),
      deliveriesPerSec: Math.round(st.received / seconds),
      latencyMs,
      fromScheduleMs: summary(st.scheduleLatency),
      ackLatencyMs: (({ p50, p99, max }) => ({ p50, p99, max }))(summary(st.ackLatency)),
      expected: acc.expected,
      received: st.received,
      lost: acc.lost,
      duplicates: acc.duplicates,
      // clients closed during the step so far (a closed member cannot receive: its deliveries count as lost)
      clientsClosed: st.clientsClosed,
      errors,
      // persisted rows over the step and its drain (a persist backlog shows as rows < accepted)
      ...(persisted === undefined ? {} : { persistedRows: persisted, persistedRowsPerSec: Math.round(persisted / rowsSecs) }),
      generatorLagMs: (({ p99, max }) => ({ p99, max }))(summary(st.sendLag)),
      cpuPct: { ...cpuPct, bench: [benchPct] },
      // the part of cpuPct spent by JavaScriptCore's compiler threads (Bun processes): start-up, not steady state
      jitCpuPct: threadCpuBetween(jit0, jit1, labels),
      // CPU µs per accepted message of each process label, its instances summed (from cpuPct)
      cpuUsPerMsg,
      // voluntary context switches (sleeps ended by a wake-up) per accepted message of each process label, its instances summed: of all its threads, and of its main thread (lib.ts sampleWakeups)
      wakeupsPerMsg: wakeupsPerMessage(wake0, wake1, labels, st.acked),
      // Redis commands per accepted message during the sending window: calls and server µs (INFO commandstats)
      ...(redis0 && redis1 ? { redisPerMsg: redisPerMessage(redis0, redis1, st.acked) } : {}),
      loadavg: loadavg(),
      // the sending window in epoch ms, e.g. for bench/profile-summary.ts --from/--to
      window: [startedAt, endedAt],
      // everything else on this shared box during the sending window (other people's tests…)
      othersCpuPct: Math.max(0, machineBusyPct(m0, m1, availableParallelism()) - ours),
    };
    report(r);
    progress(r);
    // errors covers error replies, unacked sends and sends skipped on a closed client
    const ok = acc.lost === 0 && Object.keys(errors).length === 0 && latencyMs.p99 < P99_MS && st.sent >= rate * seconds * 0.99;
    results.push({ step, targetRate: rate, acceptedPerSec: r.acceptedPerSec, deliveriesPerSec: r.deliveriesPerSec, latencyMs, lost: acc.lost, cpuUsPerMsg, ok });
  }
  // Late is not lost: after the last step, wait for the backlog, then count again per step.
  await gen.drainAll(3000, 60_000);
  report({
    event: "final-loss",
    target: t.name,
    note: "after waiting for the backlog (no frame for 3 s, at most 60 s): lost = deliveries still missing for acknowledged messages",
    steps: steps.map((st, i) => {
      const acc = gen.settle(st);
      return { step: plan[i][0], clientsClosed: st.clientsClosed, lateAcks: st.lateAcks, lateDeliveries: st.lateDeliveries, lost: acc.lost, neverAcked: acc.unacked, duplicates: acc.duplicates };
    }),
    ...(Object.keys(gen.stray).length ? { stray: gen.stray } : {}),
  });
  await gen.close();
  return results;
}

const highest = (rs: StepResult[]) => rs.filter((r) => r.step !== "warmup" && r.ok).reduce((m, r) => Math.max(m, r.targetRate), 0);

/** One human line per step on stderr (stdout holds the JSON lines). */
function progress(r: Record<string, any>) {
  const l = r.latencyMs;
  const cpu = Object.entries(r.cpuPct as Record<string, number[]>).map(([k, v]) => `${k} ${v.join("+")}`).join(", ");
  const errs = Object.entries(r.errors).map(([k, v]) => `${k} ${v}`).join(", ");
  const jit = Object.entries((r.jitCpuPct ?? {}) as Record<string, number[]>).map(([k, v]) => `${k} ${v.join("+")}`).join(", ");
  process.stderr.write(
    `[${new Date().toISOString().slice(11, 19)}] ${r.target} step ${r.step} @ ${r.targetRate}/s: accepted ${r.acceptedPerSec}/s, ` +
      `${r.deliveriesPerSec} deliveries/s, p50 ${l.p50} p90 ${l.p90} p99 ${l.p99} p99.9 ${l.p999} ms, lost ${r.lost}` +
      `${errs ? `, errors: ${errs}` : ""}; CPU % ${cpu}${jit ? ` (of it JIT compiler threads: ${jit})` : ""}; load ${r.loadavg.join(" ")}\n`,
  );
}

function summaryTable(runs: Record<string, StepResult[]>) {
  const rows = [
    `criterion: p99 < ${P99_MS} ms, zero loss, no errors, full offered rate; ${CLIENTS} clients, rooms of ${ROOM_SIZE}, ${SENDERS} senders`,
    "| target | highest msgs/s meeting | deliveries/s | p50 | p90 | p99 | p99.9 ms | CPU µs per message, per process |",
    "|---|---|---|---|---|---|---|---|",
  ];
  for (const [name, rs] of Object.entries(runs)) {
    const best = rs.filter((r) => r.step !== "warmup" && r.ok).sort((a, b) => b.targetRate - a.targetRate)[0];
    if (!best) {
      rows.push(`| ${name} | none | | | | | | |`);
      continue;
    }
    const l = best.latencyMs;
    const cpu = Object.entries(best.cpuUsPerMsg).map(([k, v]) => `${k} ${v}`).join(", ");
    rows.push(`| ${name} | ${best.targetRate} | ${best.deliveriesPerSec} | ${l.p50} | ${l.p90} | ${l.p99} | ${l.p999} | ${cpu} |`);
  }
  process.stderr.write(`\n${rows.join("\n")}\n`);
}

async function main() {
  const runs: Record<string, StepResult[]> = {};
  for (const name of TARGETS) {
    const t =
      name === "baseline"
        ? await startBaseline(USERS, cleanups)
        : name === "socketio"
          ? await startSocketIo(USERS, num("socketio-instances"), cleanups)
          : await startBunchat(
              { users: USERS, runId, topology: { api: o.api!, logic: o.logic!, task: o.task!, connect: o.connect!, basePort: o["base-port"], colocate: o.colocate }, im: o.im ?? [], cpuProf: o["cpu-prof"] },
              cleanups,
            );
    runs[name] = await runLoad(t);
    await cleanup();
  }
  const { baseline } = runs;
  for (const [name, rs] of Object.entries(runs)) {
    if (!baseline || name === "baseline") continue;
    for (let i = 0; i < rs.length; i++) {
      const a = rs[i];
      const b = baseline[i];
      if (a.step === "warmup") continue;
      const ratio = (x: number, y: number) => (y ? Math.round((x / y) * 100) / 100 : null);
      report({
        target: name,
        step: a.step,
        targetRate: a.targetRate,
        ratio: {
          acceptedPerSec: ratio(a.acceptedPerSec, b.acceptedPerSec),
          deliveriesPerSec: ratio(a.deliveriesPerSec, b.deliveriesPerSec),
          p50: ratio(a.latencyMs.p50, b.latencyMs.p50),
          p99: ratio(a.latencyMs.p99, b.latencyMs.p99),
        },
      });
    }
  }
  report({
    event: "summary",
    criterion: `p99 < ${P99_MS} ms, zero loss, no errors, full offered rate`,
    clients: CLIENTS,
    roomSize: ROOM_SIZE,
    senders: SENDERS,
    highestRateMeeting: Object.fromEntries(Object.entries(runs).map(([k, rs]) => [k, highest(rs)])),
    loadavg: loadavg(),
  });
  summaryTable(runs);
}

try {
  await main();
} finally {
  await cleanup();
}
