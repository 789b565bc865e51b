// End-to-end room messaging under stepped send rates: WebSocket clients spread over every
// connect instance of `bun run cluster`, each in one room of --room-size connections (distinct
// users), sending paced messages and timing each delivery. The same load runs first against a
// bare single-process Bun pub/sub server (bench/baseline-pubsub.ts) as the ceiling.
//
// One JSON line per step: accepted msgs/s, deliveries/s, send→receive latency, lost deliveries
// (every room member, the sender included, must get each accepted message), errors by code,
// CPU per process during the sending window, and (bunchat) the persist group's rows/s.
// Usage: bun bench/messaging.ts [--clients 1000] [--rates 1000,2500,5000,7500,10000] [--seconds 10]
//        [--target both|baseline|bunchat] [--cpu-prof DIR]   (see `options` below for all flags)
import { parseArgs } from "node:util";
import { mkdirSync } from "node:fs";
import { resolve } from "node:path";
import { availableParallelism } from "node:os";
import { cpuBetween, freeBasePort, machineBusyPct, processTree, report, ROOT, sampleCpu, sampleMachine, scrapeSum, startCluster, summary } from "./lib.ts";
import { LoadGen, type Step } from "./ws-load.ts";

const { values: o } = parseArgs({
  options: {
    clients: { type: "string", default: "1000" },
    users: { type: "string", default: "100" },
    "room-size": { type: "string", default: "10" },
    rates: { type: "string", default: "1000,2500,5000,7500,10000" },
    seconds: { type: "string", default: "10" },
    "warmup-rate": { type: "string", default: "1000" },
    "warmup-seconds": { type: "string", default: "5" },
    /** upper bound on the wait for late replies and deliveries after each step */
    drain: { type: "string", default: "3" },
    "body-bytes": { type: "string", default: "64" },
    target: { type: "string", default: "both" },
    "p99-ms": { type: "string", default: "50" },
    api: { type: "string", default: "1" },
    logic: { type: "string", default: "1" },
    task: { type: "string", default: "1" },
    connect: { type: "string", default: "2" },
    "base-port": { type: "string" },
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
if (USERS < ROOM_SIZE) throw new Error("--users must be at least --room-size (a room holds distinct users)");
if (CLIENTS % ROOM_SIZE) throw new Error("--clients must be a multiple of --room-size");

const runId = Date.now().toString(36);
const PASSWORD = "bench-password";

interface Target {
  name: string;
  wsUrl: (client: number) => string;
  /** root of the process tree whose CPU is sampled */
  pid: number;
  /** messages persisted so far (sum over task instances), if the target stores them */
  persisted?: () => Promise<number>;
  stop(): Promise<void>;
}

// Everything started is stopped in reverse order, on success, error or a signal.
const cleanups: (() => Promise<void>)[] = [];
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

const withToken = (url: string, token: string) => `${url}${url.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}`;

async function startBaseline(): Promise<Target> {
  const proc = Bun.spawn(["bun", "bench/baseline-pubsub.ts"], { cwd: ROOT, stdout: "pipe", stderr: "inherit" });
  const stop = async () => {
    proc.kill("SIGTERM");
    await proc.exited;
  };
  cleanups.push(stop);
  const { value } = await proc.stdout.getReader().read();
  const port = Number(new TextDecoder().decode(value).trim());
  if (!port) throw new Error("baseline server did not print its port");
  // Users as in the cluster run: client i is user i % USERS.
  return { name: "baseline", pid: proc.pid, wsUrl: (i) => withToken(`ws://127.0.0.1:${port}/ws`, `u${(i % USERS) + 1}`), stop };
}

/**
 * Registers USERS users (argon2id makes this ~tens of ms each) `concurrency` at a time. A busy
 * cluster may answer 429/503 after all (or time out) and still create the user: a retry that
 * then finds the name taken logs in instead.
 */
async function register(apis: string[], concurrency: number): Promise<string[]> {
  const tokens: string[] = [];
  const retried: Record<string, number> = {};
  const post = (api: string, path: string, userName: string) =>
    fetch(`${api}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ userName, password: PASSWORD }),
      signal: AbortSignal.timeout(30_000),
    });
  let next = 0;
  const worker = async () => {
    while (next < USERS) {
      const i = next++;
      const api = apis[i % apis.length];
      const userName = `b${runId}u${i}`;
      for (let attempt = 0; ; attempt++) {
        let r: Response | undefined;
        try {
          r = await post(api, "/api/users", userName);
          if (r.status === 409 && attempt > 0) r = await post(api, "/api/sessions", userName);
        } catch (e) {
          if (attempt >= 10) throw e;
        }
        if (r?.ok) {
          tokens[i] = ((await r.json()) as { token: string }).token;
          break;
        }
        const why = r ? String(r.status) : "timeout";
        if (r && r.status !== 429 && r.status !== 503) throw new Error(`register ${userName}: HTTP ${r.status} ${await r.text()}`);
        if (attempt >= 10) throw new Error(`register ${userName}: still ${why} after ${attempt + 1} attempts`);
        retried[why] = (retried[why] ?? 0) + 1;
        await Bun.sleep(200 * (attempt + 1));
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  if (Object.keys(retried).length) report({ event: "register-retries", ...retried });
  return tokens;
}

async function startBunchat(): Promise<Target> {
  // The rate limiter is not what is measured: every user may send far more than the bench does.
  const env: Record<string, string> = { IM_RATE_LIMIT: "100000", IM_RATE_BURST: "100000" };
  for (const kv of o.im ?? []) {
    const at = kv.indexOf("=");
    if (!kv.startsWith("IM_") || at < 0) throw new Error(`--im wants IM_NAME=value, got ${kv}`);
    env[kv.slice(0, at)] = kv.slice(at + 1);
  }
  if (o["cpu-prof"]) {
    const dir = resolve(String(o["cpu-prof"]));
    mkdirSync(dir, { recursive: true });
    env.BUN_OPTIONS = `--cpu-prof --cpu-prof-dir=${dir}`; // summarise with bench/profile-summary.ts
  }
  const basePort = o["base-port"] ?? String(freeBasePort());
  const args = ["--base-port", basePort, "--api", o.api!, "--logic", o.logic!, "--task", o.task!, "--connect", o.connect!];
  const t0 = performance.now();
  const cluster = await startCluster(args, env);
  cleanups.push(() => cluster.stop());
  const started = performance.now();
  const tokens = await register(cluster.api, 8);
  report({
    event: "setup",
    target: "bunchat",
    clusterArgs: args.join(" "),
    env,
    clusterReadySec: Math.round(started - t0) / 1000,
    registerSec: Math.round(performance.now() - started) / 1000,
    connect: cluster.connect,
  });
  return {
    name: "bunchat",
    pid: cluster.pid,
    // Client i talks to connect instance i % n: a room's 10 clients span every instance.
    wsUrl: (i) => withToken(cluster.connect[i % cluster.connect.length], tokens[i % USERS]),
    persisted: async () => {
      const { sum, failed } = await scrapeSum(cluster.metrics, "bunchat_task_rows_persisted_total");
      if (failed.length === cluster.metrics.length) throw new Error("no /metrics endpoint answered");
      return sum;
    },
    stop: () => cluster.stop(),
  };
}

interface StepResult {
  step: number | "warmup";
  targetRate: number;
  acceptedPerSec: number;
  deliveriesPerSec: number;
  latencyMs: ReturnType<typeof summary>;
  lost: number;
  ok: boolean;
}

async function runLoad(t: Target): Promise<StepResult[]> {
  const gen = new LoadGen({ roomSize: ROOM_SIZE, bodyBytes: num("body-bytes"), runId });
  cleanups.push(() => gen.close());
  const t0 = performance.now();
  await gen.open(CLIENTS, t.wsUrl, 50);
  const opened = performance.now();
  await gen.joinAll(50);
  report({ event: "clients", target: t.name, clients: CLIENTS, rooms: CLIENTS / ROOM_SIZE, openSec: Math.round(opened - t0) / 1000, joinSec: Math.round(performance.now() - opened) / 1000 });
  await Bun.sleep(1000);

  const labels = processTree(t.pid);
  const plan: [number | "warmup", number, number][] = [["warmup", num("warmup-rate"), num("warmup-seconds")], ...RATES.map((r, i) => [i + 1, r, SECONDS] as [number, number, number])];
  const results: StepResult[] = [];
  const steps: Step[] = [];
  let stepNo = 0;
  for (const [step, rate, seconds] of plan) {
    const rows0 = t.persisted ? await t.persisted() : 0;
    const rowsAt0 = performance.now();
    const cpu0 = sampleCpu(labels.keys());
    const self0 = process.cpuUsage();
    const m0 = sampleMachine();
    const startedAt = Date.now();
    const st = await gen.pace(++stepNo, rate, seconds);
    steps.push(st);
    const cpu1 = sampleCpu(labels.keys());
    const self1 = process.cpuUsage(self0);
    const m1 = sampleMachine();
    const endedAt = Date.now();
    const sendSecs = (cpu1.at - cpu0.at) / 1000;
    await gen.drain(st, DRAIN_MS);
    const acc = gen.settle(st);
    const persisted = t.persisted ? (await t.persisted()) - rows0 : undefined;
    const rowsSecs = (performance.now() - rowsAt0) / 1000;
    const latencyMs = summary(st.latency);
    const cpuPct = cpuBetween(cpu0, cpu1, labels);
    const benchPct = Math.round(((self1.user + self1.system) / 1e6 / sendSecs) * 100);
    const ours = benchPct + Object.values(cpuPct).flat().reduce((a, b) => a + b, 0);
    const errors = { ...st.errors, ...(acc.unacked ? { unacked: acc.unacked } : {}) };
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
      errors,
      // persisted rows over the step and its drain (a persist backlog shows as rows < accepted)
      ...(persisted === undefined ? {} : { persistedRows: persisted, persistedRowsPerSec: Math.round(persisted / rowsSecs) }),
      generatorLagMs: (({ p99, max }) => ({ p99, max }))(summary(st.sendLag)),
      cpuPct: { ...cpuPct, bench: [benchPct] },
      // the sending window in epoch ms, e.g. for bench/profile-summary.ts --from/--to
      window: [startedAt, endedAt],
      // everything else on this shared box during the sending window (other people's tests…)
      othersCpuPct: Math.max(0, machineBusyPct(m0, m1, availableParallelism()) - ours),
    };
    report(r);
    // errors covers error replies, unacked sends and sends skipped on a closed client
    const ok = acc.lost === 0 && Object.keys(errors).length === 0 && latencyMs.p99 < P99_MS && st.sent >= rate * seconds * 0.99;
    results.push({ step, targetRate: rate, acceptedPerSec: r.acceptedPerSec, deliveriesPerSec: r.deliveriesPerSec, latencyMs, lost: acc.lost, ok });
  }
  // Late is not lost: after the last step, wait for the backlog, then count again per step.
  await gen.drainAll(3000, 60_000);
  report({
    event: "final-loss",
    target: t.name,
    note: "after waiting for the backlog (no frame for 3 s, at most 60 s): lost = deliveries still missing for acknowledged messages",
    steps: steps.map((st, i) => {
      const acc = gen.settle(st);
      return { step: plan[i][0], lateAcks: st.lateAcks, lateDeliveries: st.lateDeliveries, lost: acc.lost, neverAcked: acc.unacked, duplicates: acc.duplicates };
    }),
    ...(Object.keys(gen.stray).length ? { stray: gen.stray } : {}),
  });
  await gen.close();
  return results;
}

const highest = (rs: StepResult[]) => rs.filter((r) => r.step !== "warmup" && r.ok).reduce((m, r) => Math.max(m, r.targetRate), 0);

async function main() {
  const runs: Record<string, StepResult[]> = {};
  if (o.target === "both" || o.target === "baseline") {
    const t = await startBaseline();
    runs.baseline = await runLoad(t);
    await cleanup();
  }
  if (o.target === "both" || o.target === "bunchat") {
    const t = await startBunchat();
    runs.bunchat = await runLoad(t);
    await cleanup();
  }
  const { baseline, bunchat } = runs;
  if (baseline && bunchat)
    for (let i = 0; i < bunchat.length; i++) {
      const a = bunchat[i];
      const b = baseline[i];
      if (a.step === "warmup") continue;
      const ratio = (x: number, y: number) => (y ? Math.round((x / y) * 100) / 100 : null);
      report({
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
  report({
    event: "summary",
    criterion: `p99 < ${P99_MS} ms, zero loss, no errors, full offered rate`,
    highestRateMeeting: Object.fromEntries(Object.entries(runs).map(([k, rs]) => [k, highest(rs)])),
  });
}

try {
  await main();
} finally {
  await cleanup();
}
