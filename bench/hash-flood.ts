// Do sends and token checks slow down while a flood of registrations keeps argon2 busy? Against
// `bun run cluster` (1 api, 1 logic, 1 task, 1 connect), in one run: steps without and with a
// flood, alternating. Each step paces GET /api/me and POST /api/rooms/{room}/messages (open loop,
// fixed rates) and reports their p50/p99; a flood step also sends POST /api/users with random names
// at --flood-rate per second, open loop (each one an argon2id hash unless the pool refuses it with
// 429), several times what the hashing pool can do. --hash-concurrency/--hash-queue set
// IM_HASH_CONCURRENCY/IM_HASH_QUEUE/IM_HASH_NICE (64/100000/0: unbounded hashing at normal
// priority, as before the pool). --flood-closed N
// floods closed loop instead: N connections, each sending the next registration on an answer
// (with fast 429s that is a plain request flood, as fast as the api answers).
// Usage: bun bench/hash-flood.ts [--seconds 10] [--rate 40] [--flood-rate 100 | --flood-closed 64] [--rounds 2] [--base-port 31000]
import { loadavg } from "node:os";
import { parseArgs } from "node:util";
import { availableParallelism } from "node:os";
import { cpuBetween, machineBusyPct, newHistogram, processTree, report, sampleCpu, sampleMachine, startCluster, summary } from "./lib.ts";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "10" },
    rate: { type: "string", default: "40" },
    "flood-rate": { type: "string", default: "100" },
    "flood-closed": { type: "string" },
    "hash-concurrency": { type: "string" },
    "hash-queue": { type: "string" },
    "hash-nice": { type: "string" },
    rounds: { type: "string", default: "2" },
    "base-port": { type: "string", default: "31000" },
  },
});
const seconds = Number(values.seconds);
const rate = Number(values.rate); // per second, for /me and for sends each
const floodRate = Number(values["flood-rate"]);
const floodClosed = Number(values["flood-closed"] ?? 0);

// The flood comes from one address: lib.ts lifts the per-address limit, so the hashing pool is what is measured.
const cluster = await startCluster(["--base-port", values["base-port"]!, "--api", "1", "--logic", "1", "--task", "1", "--connect", "1"], {
  ...(values["hash-concurrency"] ? { IM_HASH_CONCURRENCY: values["hash-concurrency"] } : {}),
  ...(values["hash-queue"] ? { IM_HASH_QUEUE: values["hash-queue"] } : {}),
  ...(values["hash-nice"] ? { IM_HASH_NICE: values["hash-nice"] } : {}),
});
const stop = async () => cluster.stop();
for (const sig of ["SIGINT", "SIGTERM"] as const) process.on(sig, () => void stop().finally(() => process.exit(130)));

const api = cluster.api[0];
const post = (path: string, body: unknown, token?: string) =>
  fetch(`${api}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
  });
const tag = Date.now().toString(36);
let nameNo = 0;
const freshName = () => `hf${tag}${++nameNo}`;

/** Senders: the per-user send budget is 50/s, so the send rate is spread over several users. */
const senders: string[] = [];
for (let i = 0; i < Math.max(1, Math.ceil(rate / 20)); i++) {
  const r = await post("/api/users", { userName: freshName(), password: "bench-password" });
  if (r.status !== 201) throw new Error(`register: HTTP ${r.status}`);
  senders.push(((await r.json()) as { token: string }).token);
}

/** Fires fn `rate` times a second until `ms` passed or `until()` is false, without waiting for answers; latency in µs. */
async function paced(fn: (i: number) => Promise<Response>, ms: number, rate: number, until = () => true) {
  const h = newHistogram();
  const statuses: Record<string, number> = {};
  const inflight: Promise<void>[] = [];
  const t0 = performance.now();
  for (let i = 0; performance.now() - t0 < ms && until(); i++) {
    const due = t0 + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 0) await Bun.sleep(wait);
    const start = performance.now();
    inflight.push(
      fn(i).then(
        async (r) => {
          await r.arrayBuffer();
          h.recordValue(Math.max(1, Math.round((performance.now() - start) * 1000)));
          statuses[r.status] = (statuses[r.status] ?? 0) + 1;
        },
        () => {
          statuses.error = (statuses.error ?? 0) + 1;
        },
      ),
    );
  }
  await Promise.all(inflight);
  return { ...summary(h), statuses };
}

/**
 * The closed-loop flood runs in its own process, so its event loop does not delay the measured
 * requests' timers: `conns` loops each send the next registration as soon as the last answered,
 * until SIGTERM, then print their status counts and latency (ms) as one JSON line.
 */
const FLOOD_WORKER = `
const [api, conns, tag] = [process.argv[1], Number(process.argv[2]), process.argv[3]];
const statuses = {}; const lat = []; let n = 0; let on = true;
process.on("SIGTERM", () => { on = false; });
await Promise.all(Array.from({ length: conns }, async () => {
  while (on) {
    const t = performance.now();
    const r = await fetch(api + "/api/users", { method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ userName: tag + "f" + ++n, password: "bench-password" }) }).catch(() => undefined);
    await r?.arrayBuffer();
    lat.push(performance.now() - t);
    const k = r ? String(r.status) : "error"; statuses[k] = (statuses[k] ?? 0) + 1;
  }
}));
lat.sort((a, b) => a - b);
const q = (p) => Math.round(lat[Math.min(lat.length - 1, Math.floor(lat.length * p))] * 100) / 100;
console.log(JSON.stringify({ statuses, p50: q(0.5), p99: q(0.99), max: q(1) }));
`;

let floodNo = 0;
async function closedLoop(conns: number, stopped: Promise<void>, onPid: (pid: number) => void) {
  const child = Bun.spawn([process.execPath, "-e", FLOOD_WORKER, api, String(conns), `hc${tag}${++floodNo}`], { stdout: "pipe", stderr: "inherit" });
  onPid(child.pid);
  await stopped;
  child.kill("SIGTERM");
  const out = await new Response(child.stdout).text();
  await child.exited;
  return JSON.parse(out.trim()) as { statuses: Record<string, number>; p50: number; p99: number; max: number };
}

async function step(name: string, flood: boolean) {
  let flooding = flood;
  const register = () => post("/api/users", { userName: freshName(), password: "bench-password" });
  let endFlood!: () => void;
  const floodEnded = new Promise<void>((res) => (endFlood = res));
  // CPU per process while measuring: the cluster's, this bench's and the flood client's.
  const labels = processTree(cluster.pid);
  labels.set(process.pid, "bench");
  const floodRun = !flood
    ? undefined
    : floodClosed
      ? closedLoop(floodClosed, floodEnded, (pid) => labels.set(pid, "flood-client"))
      : paced(register, 3_600_000, floodRate, () => flooding);
  if (flood) await Bun.sleep(1000); // let the flood fill the pool before measuring
  const cpu0 = sampleCpu(labels.keys());
  const machine0 = sampleMachine();
  const [me, send] = await Promise.all([
    paced(() => fetch(`${api}/api/me`, { headers: { authorization: `Bearer ${senders[0]}` } }), seconds * 1000, rate),
    paced((i) => post(`/api/rooms/hf${tag}/messages`, { body: `m${i}` }, senders[i % senders.length]), seconds * 1000, rate),
  ]);
  const cpu = cpuBetween(cpu0, sampleCpu(labels.keys()), labels);
  const machineCpuPct = machineBusyPct(machine0, sampleMachine(), availableParallelism());
  flooding = false;
  endFlood();
  const floodRes = await floodRun;
  report({
    step: name,
    seconds,
    ratePerSec: rate,
    flood: flood ? (floodClosed ? `closed loop, ${floodClosed} connections` : `${floodRate}/s`) : "none",
    me,
    send,
    floodResult: floodRes && { statuses: floodRes.statuses, p50: floodRes.p50, p99: floodRes.p99, max: floodRes.max },
    cpuPct: cpu,
    machineCpuPct,
    loadavg1m: Math.round(loadavg()[0] * 100) / 100,
  });
}

try {
  // Warm both paths (JIT, connections, argon2's first 64 MiB allocations) before measuring.
  await step("warm-up", false);
  await step("warm-up flood", true);
  for (let r = 1; r <= Number(values.rounds); r++) {
    await step(`no flood #${r}`, false);
    await step(`flood #${r}`, true);
  }
} finally {
  await stop();
}
