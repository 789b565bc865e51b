// The acknowledgement modes side by side (IM_ACK_MODE, README "Acknowledgement modes"), in one
// run: logic's send path (Messages.send, as the logic role runs it, without gRPC) against its own
// real redis-server per mode, at stepped open-loop rates. Each mode's Redis:
//   memory  — appendonly yes, appendfsync everysec (acked once Redis ran the script)
//   fsync   — appendonly yes, appendfsync always (Redis fsyncs the AOF before it answers; one
//             fsync covers every script call of an event-loop round)
//   replica — appendfsync everysec plus one replica; each send() call WAITs for 1 replica
// For each rate the modes run one after another (interleaved, so a load change on the shared box
// hits all of them alike). One JSON line per (rate, mode): achieved msgs/s, send-call latency
// p50/p99/max (ms, per batch, all its messages answered together), CPU µs per message of this
// process and of the redis-server(s) (INFO cpu), and loadavg (1 min) at the end of the step.
// Then one summary line per mode: the highest rate with p99 < 50 ms and >= 95 % of it achieved.
//
//   bun bench/ack-modes.ts [--rates 2000,5000,10000,20000] [--seconds 5] [--tick-ms 5]
//
// The redis-servers run on free ports in a temporary folder and are stopped by pid at the end.
import Redis, { type RedisOptions } from "ioredis";
import { mkdtempSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Child } from "../src/infra/child.ts";
import { findBinary } from "../src/infra/binaries.ts";
import { freePort } from "../src/infra/ports.ts";
import { redisPing } from "../src/infra/redis.ts";
import { redisKeys } from "../src/shared/keys.ts";
import type { Config } from "../src/shared/config.ts";
import { noLateWrites } from "../src/shared/redis.ts";
import { defineScripts } from "../src/logic/scripts.ts";
import { Messages } from "../src/logic/messages.ts";
import { Snowflake } from "../src/logic/snowflake.ts";
import { benchAccounts, noRows, sendStream } from "./send-path.ts";
import { newHistogram } from "./lib.ts";

const { values: opt } = parseArgs({
  options: {
    rates: { type: "string", default: "2000,5000,10000,20000" },
    seconds: { type: "string", default: "5" },
    "tick-ms": { type: "string", default: "5" },
    "p99-ms": { type: "string", default: "50" },
  },
});
const RATES = opt.rates.split(",").map(Number);
const SECONDS = Number(opt.seconds);
const TICK_MS = Number(opt["tick-ms"]);
const P99_MS = Number(opt["p99-ms"]);
type Mode = Config["ackMode"];
const MODES: Mode[] = ["memory", "fsync", "replica"];

const dir = mkdtempSync(join(tmpdir(), "bunchat-ack-bench-"));
const children: Child[] = [];
const server = findBinary(["redis-server"], "redis-server");
async function redisServer(name: string, fsync: "always" | "everysec", extra: string[] = []): Promise<number> {
  const port = await freePort();
  const d = join(dir, name);
  await Bun.$`mkdir -p ${d}`;
  children.push(new Child({ cmd: [server, "--port", String(port), "--bind", "127.0.0.1", "--dir", d, "--save", "", "--appendonly", "yes", "--appendfsync", fsync, ...extra] }));
  const until = Date.now() + 10_000;
  while (!(await redisPing(port))) {
    if (Date.now() > until) throw new Error(`redis-server ${name} did not start`);
    await Bun.sleep(50);
  }
  return port;
}
/** Every Redis client made here: closed before their servers stop (else they log ECONNREFUSED while reconnecting). */
const clients: Redis[] = [];
const client = (port: number, opts: RedisOptions = {}) => {
  const r = new Redis(port, opts);
  clients.push(r);
  return r;
};
const cleanup = async () => {
  for (const c of clients) c.disconnect();
  await Promise.all(children.map((c) => c.stop(5000)));
  rmSync(dir, { recursive: true, force: true });
};
for (const [sig, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) process.once(sig, () => void cleanup().then(() => process.exit(code)));

// MySQL is only read to seed a conversation's counter once per Redis process: a stub with no rows.

interface Setup {
  mode: Mode;
  messages: Messages;
  cpuPorts: Redis[];
}

async function setup(mode: Mode, worker: number): Promise<Setup> {
  const primary = await redisServer(mode, mode === "fsync" ? "always" : "everysec");
  const cpuPorts = [client(primary)];
  if (mode === "replica") {
    const replica = await redisServer("replica", "everysec", ["--replicaof", "127.0.0.1", String(primary)]);
    const r = client(replica);
    while (!(await r.info("replication")).includes("master_link_status:up")) await Bun.sleep(50);
    cpuPorts.push(r);
  }
  const config = { redisPrefix: "bench:", streamPartitions: 8, rateLimitPerSec: 1_000_000, rateLimitBurst: 1_000_000, sendTimeoutMs: 5000, ackMode: mode } as Config;
  const redis = defineScripts(client(primary, { enableAutoPipelining: true, ...noLateWrites(config.sendTimeoutMs) }));
  const snowflake = new Snowflake(worker);
  const messages = new Messages({ db: noRows, redis, keys: redisKeys("bench:"), config, accounts: benchAccounts, ids: () => snowflake });
  return { mode, messages, cpuPorts };
}

const item = sendStream();

async function redisCpuSec(rs: Redis[]): Promise<number> {
  let sum = 0;
  for (const r of rs) {
    const info = await r.info("cpu");
    const get = (k: string) => Number(new RegExp(`^${k}:([\\d.]+)`, "m").exec(info)?.[1]);
    sum += get("used_cpu_user") + get("used_cpu_sys");
  }
  return sum;
}

/** Open loop: every tick a batch of rate × tick messages goes out, whatever is still in flight. */
async function step(s: Setup, rate: number) {
  const perTick = Math.max(1, Math.round((rate * TICK_MS) / 1000));
  const ticks = Math.round((SECONDS * 1000) / TICK_MS);
  const h = newHistogram();
  let sent = 0;
  let errors = 0;
  const inflight: Promise<void>[] = [];
  const cpu0 = process.cpuUsage();
  const r0 = await redisCpuSec(s.cpuPorts);
  const t0 = performance.now();
  for (let t = 0; t < ticks; t++) {
    const due = t0 + t * TICK_MS;
    const wait = due - performance.now();
    if (wait > 0) await Bun.sleep(wait);
    const batch = Array.from({ length: perTick }, item);
    sent += batch.length;
    const start = performance.now();
    inflight.push(
      s.messages.send(batch).then((res) => {
        h.recordValue(Math.max(1, Math.round((performance.now() - start) * 1000)));
        for (const r of res) if (!r.ok) errors++;
      }),
    );
  }
  await Promise.all(inflight);
  const sec = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const rcpu = (await redisCpuSec(s.cpuPorts)) - r0;
  const ms = (q: number) => +(h.getValueAtPercentile(q) / 1000).toFixed(2);
  return {
    mode: s.mode,
    rate,
    msgsPerSec: Math.round((sent - errors) / sec),
    errors,
    p50Ms: ms(50),
    p99Ms: ms(99),
    maxMs: +(h.maxValue / 1000).toFixed(2),
    bunCpuUsPerMsg: +((cpu.user + cpu.system) / sent).toFixed(1),
    redisCpuUsPerMsg: +((rcpu * 1e6) / sent).toFixed(1),
    loadavg1: +loadavg()[0].toFixed(2),
  };
}

try {
  const setups = [];
  for (const [i, m] of MODES.entries()) setups.push(await setup(m, 200 + i));
  // Warm-up: every conversation seeded, scripts loaded.
  for (const s of setups) await step(s, 1000);
  const best = new Map<Mode, number>();
  for (const rate of RATES) {
    for (const s of setups) {
      const line = await step(s, rate);
      console.log(JSON.stringify({ bench: "ack-modes", ...line }));
      if (line.p99Ms < P99_MS && line.msgsPerSec >= rate * 0.95 && !line.errors) best.set(s.mode, Math.max(best.get(s.mode) ?? 0, rate));
    }
  }
  for (const m of MODES) console.log(JSON.stringify({ bench: "ack-modes", summary: m, maxRateP99Under50Ms: best.get(m) ?? 0 }));
} finally {
  await cleanup();
  process.exit(0);
}
