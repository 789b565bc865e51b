// Micro-benchmark of logic's send path alone: Messages.send against a real redis-server, no gRPC,
// no MySQL (direct-message targets are answered by a stub). For each batch size it keeps about
// --inflight messages in flight (ceil(inflight / batch) concurrent send() loops, each awaiting
// its previous batch), and prints one JSON line: messages/s, this Bun process's CPU µs per
// message (process.cpuUsage), redis-server's CPU µs per message (INFO cpu) and othersCpuPct, the
// CPU the rest of the machine used meanwhile (% of one core; the numbers are noisy when high).
//
//   bun bench/logic-send.ts [--redis redis://127.0.0.1:6379] [--batches 1,10,100]
//                               [--messages 40000] [--inflight 256] [--rounds 3]
//                               [--baseline /path/to/another/checkout] [--rate 500]
//                               [--ioredis-trace]
//
// --ioredis-trace leaves out src/shared/tracing-channel.ts (which every role loads through
// src/shared/redis.ts), to measure what ioredis's per-command tracing costs on Bun without it.
//
// --rate N paces the calls instead (open loop, N send() calls a second, each of --batches items,
// not waiting for earlier ones): the regime of a real cluster at moderate load, where each call
// is its own Redis round trip and wake-up rather than part of a full auto-pipeline. Then
// bunCpuUsPerMsg includes this process's idle cost (timers) over the run; a line also gives
// bunCpuUsPerCall and redisCpuUsPerCall.
//
// With --baseline, every round runs that checkout's Messages and send script and then this one's,
// one after the other against the same redis-server, and each line says which ("version":
// "baseline" | "current"): a before/after comparison in one run, where load from the rest of the
// machine hits both alike (git archive <rev> | tar -x -C dir; ln -s $PWD/node_modules dir/).
//
// Without --redis it starts `redis-server --save '' --appendonly no` on a free port and stops it
// (by pid) at the end, also on SIGINT/SIGTERM. With --redis it uses that server and deletes only its own "bench:" keys.
// Items look like the ones api and connect send: 64-character bodies from 100 users, 9 in 10
// to one of 100 rooms with a retryKey, 1 in 10 a direct message with a clientMsgId.
import Redis from "ioredis";
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { redisKeys } from "../src/shared/keys.ts";
import type { Config } from "../src/shared/config.ts";
import type { SendReq } from "../proto/logic.ts";
import { defineScripts } from "../src/logic/scripts.ts";
import { Messages } from "../src/logic/messages.ts";
import { Snowflake } from "../src/logic/snowflake.ts";
import { benchAccounts, noRows, sendStream } from "./send-path.ts";
import { startScratchRedis } from "./lib.ts";

const { values: opt } = parseArgs({
  options: {
    redis: { type: "string" },
    batches: { type: "string", default: "1,10,100" },
    messages: { type: "string", default: "40000" },
    inflight: { type: "string", default: "256" },
    rounds: { type: "string", default: "3" },
    baseline: { type: "string" },
    rate: { type: "string" },
    "ioredis-trace": { type: "boolean", default: false },
  },
});
if (!opt["ioredis-trace"]) await import("../src/shared/tracing-channel.ts");
const batches = opt.batches.split(",").map(Number);
const total = Number(opt.messages);
const inflight = Number(opt.inflight);
const rounds = Number(opt.rounds);
const rate = opt.rate ? Number(opt.rate) : 0;
const PREFIX = "bench:";

let server: Awaited<ReturnType<typeof startScratchRedis>> | undefined;
let url = opt.redis;
if (!url) {
  server = await startScratchRedis();
  url = `redis://127.0.0.1:${server.port}`;
}
const stopServer = () => server?.stop();
for (const [sig, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
  process.once(sig, () => {
    stopServer();
    process.exit(code);
  });
}

const redis = defineScripts(new Redis(url, { enableAutoPipelining: true, maxRetriesPerRequest: 2 }));
const admin = new Redis(url);
const config = { redisPrefix: PREFIX, streamPartitions: 8, rateLimitPerSec: 1_000_000, rateLimitBurst: 1_000_000, sendTimeoutMs: 5000, ackMode: "memory" } as Config;
// MySQL is only read to seed a conversation's counter once per Redis process: a stub with no rows.
const snowflake = new Snowflake(1);
const current = new Messages({ db: noRows, redis, keys: redisKeys(PREFIX), config, accounts: benchAccounts, ids: () => snowflake });
const versions: [string, { send: Messages["send"] }][] = [["current", current]];
const closers: (() => void)[] = [];
if (opt.baseline) {
  const dir = opt.baseline.replace(/\/$/, "");
  const base = {
    scripts: (await import(`${dir}/src/logic/scripts.ts`)) as typeof import("../src/logic/scripts.ts"),
    messages: (await import(`${dir}/src/logic/messages.ts`)) as typeof import("../src/logic/messages.ts"),
    keys: (await import(`${dir}/src/shared/keys.ts`)) as typeof import("../src/shared/keys.ts"),
  };
  const baseRedis = base.scripts.defineScripts(new Redis(url, { enableAutoPipelining: true, maxRetriesPerRequest: 2 }));
  const m = new base.messages.Messages({ db: noRows, redis: baseRedis, keys: base.keys.redisKeys(PREFIX), config, accounts: benchAccounts, ids: () => snowflake } as never);
  versions.unshift(["baseline", m]);
  closers.push(() => baseRedis.disconnect());
}

const item = sendStream();

async function redisCpuSec(): Promise<number> {
  const info = await admin.info("cpu");
  const get = (k: string) => Number(new RegExp(`^${k}:([\\d.]+)`, "m").exec(info)?.[1]);
  return get("used_cpu_user") + get("used_cpu_sys");
}

/** Calls and µs spent inside Redis on the send script so far (INFO commandstats, evalsha + eval). */
async function scriptStats(): Promise<{ calls: number; usec: number }> {
  const info = await admin.info("commandstats");
  let calls = 0;
  let usec = 0;
  for (const m of info.matchAll(/^cmdstat_(?:evalsha|eval):calls=(\d+),usec=(\d+)/gm)) {
    calls += Number(m[1]);
    usec += Number(m[2]);
  }
  return { calls, usec };
}

/** Busy CPU seconds of the whole machine (Linux /proc/stat; NaN elsewhere). */
function machineBusySec(): number {
  try {
    const f = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
    return (f.reduce((a, b) => a + b, 0) - f[3] - f[4]) / 100; // minus idle and iowait; USER_HZ = 100
  } catch {
    return NaN;
  }
}

async function clear(): Promise<void> {
  let cursor = "0";
  do {
    const [next, keys] = await admin.scan(cursor, "MATCH", `${PREFIX}*`, "COUNT", 1000);
    if (keys.length) await admin.unlink(...keys);
    cursor = next;
  } while (cursor !== "0");
}

/** Sends `count` messages in batches of `batch` with about `inflight` messages in flight. */
async function run(messages: { send: Messages["send"] }, batch: number, count: number) {
  const workers = Math.max(1, Math.ceil(inflight / batch));
  let errors = 0;
  const prepared: SendReq[][] = [];
  for (let s = 0; s < count; s += batch) prepared.push(Array.from({ length: Math.min(batch, count - s) }, item));
  let next = 0;
  const cpu0 = process.cpuUsage();
  const rcpu0 = await redisCpuSec();
  const s0 = await scriptStats();
  const busy0 = machineBusySec();
  const t0 = performance.now();
  if (rate) {
    // Open loop: call k goes out at t0 + k / rate, whatever the earlier ones are doing.
    const calls: Promise<void>[] = [];
    const one = async (items: SendReq[]) => {
      for (const r of await messages.send(items)) if (!r.ok) errors++;
    };
    for (let k = 0; k < prepared.length; k++) {
      const wait = t0 + (k * 1000) / rate - performance.now();
      if (wait >= 1) await Bun.sleep(wait);
      calls.push(one(prepared[k]));
    }
    await Promise.all(calls);
  } else {
    await Promise.all(
      Array.from({ length: workers }, async () => {
        while (next < prepared.length) {
          const items = prepared[next++];
          for (const r of await messages.send(items)) if (!r.ok) errors++;
        }
      }),
    );
  }
  const sec = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const busy = machineBusySec() - busy0;
  const rcpu = (await redisCpuSec()) - rcpu0;
  const s1 = await scriptStats();
  return {
    batch,
    messages: count,
    ...(rate ? { callsPerSec: rate, bunCpuUsPerCall: +((cpu.user + cpu.system) / prepared.length).toFixed(1), redisCpuUsPerCall: +((rcpu * 1e6) / prepared.length).toFixed(1) } : { workers }),
    errors,
    msgsPerSec: Math.round(count / sec),
    bunCpuUsPerMsg: +((cpu.user + cpu.system) / count).toFixed(2),
    redisCpuUsPerMsg: +((rcpu * 1e6) / count).toFixed(2),
    // Time inside the script per message (commandstats): Redis's CPU minus its network and event-loop work.
    scriptUsPerMsg: +((s1.usec - s0.usec) / count).toFixed(2),
    // CPU neither this process nor redis-server used meanwhile, % of one core: other load on the box.
    othersCpuPct: Math.round(((busy - (cpu.user + cpu.system) / 1e6 - rcpu) / sec) * 100),
  };
}

try {
  await redis.ping();
  for (let r = 1; r <= rounds; r++) {
    for (const b of batches) {
      for (const [version, messages] of versions) {
        await clear();
        await run(messages, b, Math.min(total, rate ? 1000 : 5000)); // warm-up: JIT, script cache, connection
        await clear();
        Bun.gc(true);
        console.log(JSON.stringify({ round: r, ...(opt.baseline ? { version } : {}), ...(await run(messages, b, total)) }));
      }
    }
  }
  await clear();
} finally {
  for (const close of closers) close();
  redis.disconnect();
  admin.disconnect();
  stopServer();
}
