// CPU of logic's send call with and without its RPC layer, at a paced rate (the regime of a real
// cluster: each call alone, not part of a full pipeline). One process holds both sides, so its CPU
// (process.cpuUsage) covers client, server and Messages.send; redis-server's comes from INFO cpu.
// Variants, alternated in each round:
//   direct  Messages.send, no RPC
//   grpc    LogicService over gRPC on loopback as logic and connect run it: cluster-secret
//           interceptor (per stream), instrumentServer + instrumentClient (rpc-metrics, per call),
//           msgpackr codec, pipe lanes, and logic's send handler (answerBudgetMs, answer timer)
//   bare    the same gRPC without the secret and without rpc-metrics
// Usage: bun bench/rpc-send.ts [--rate 500] [--batches 1,2,10] [--calls 3000] [--rounds 3] [--variants direct,bare,grpc]
// Starts its own redis-server (--save '' --appendonly no) on a free port and stops it by pid.
import Redis from "ioredis";
import { parseArgs } from "node:util";
import "../src/shared/tracing-channel.ts"; // as every role has it through src/shared/redis.ts
import { Registry } from "prom-client";
import { freePort } from "../src/infra/ports.ts";
import { redisPing } from "../src/infra/redis.ts";
import { redisKeys } from "../src/shared/keys.ts";
import type { Config } from "../src/shared/config.ts";
import { defineScripts } from "../src/logic/scripts.ts";
import { Messages } from "../src/logic/messages.ts";
import { Snowflake } from "../src/logic/snowflake.ts";
import { addService, makeClient, startServer, type Client } from "../src/shared/rpc.ts";
import { instrumentClient, instrumentServer } from "../src/shared/rpc-metrics.ts";
import { ClusterAuth } from "../src/shared/cluster-auth.ts";
import { answerBudgetMs } from "../src/shared/send-deadline.ts";
import { createLogger } from "../src/shared/log.ts";
import { LogicService, type LogicApi, type SendReq } from "../proto/logic.ts";
import { benchAccounts, noRows, sendStream } from "./send-path.ts";

const { values: o } = parseArgs({
  options: {
    rate: { type: "string", default: "500" },
    batches: { type: "string", default: "1,2,10" },
    calls: { type: "string", default: "3000" },
    rounds: { type: "string", default: "3" },
    variants: { type: "string", default: "direct,bare,grpc" },
  },
});
const rate = Number(o.rate);

const port = await freePort();
const server = Bun.spawn(["redis-server", "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--logfile", ""], { stdout: "ignore", stderr: "inherit" });
for (const sig of ["SIGINT", "SIGTERM"] as const) process.once(sig, () => (server.kill(), process.exit(1)));
while (!(await redisPing(port))) await Bun.sleep(50);
const url = `redis://127.0.0.1:${port}`;
const redis = defineScripts(new Redis(url, { enableAutoPipelining: true, maxRetriesPerRequest: 2 }));
const admin = new Redis(url);
const config = { redisPrefix: "bench:", streamPartitions: 8, rateLimitPerSec: 1_000_000, rateLimitBurst: 1_000_000, sendTimeoutMs: 5000, ackMode: "memory" } as Config;
const snowflake = new Snowflake(1);
const messages = new Messages({ db: noRows, redis, keys: redisKeys("bench:"), config, accounts: benchAccounts, ids: () => snowflake });
const log = createLogger({ level: "error" });

/** Logic's send handler (src/logic/server.ts) without its prom-client counters. */
const handler = {
  send: async (r: { items: SendReq[]; budgetMs?: number; answerBy?: number }) => {
    const now = Date.now();
    const budget = answerBudgetMs(r, now, config.sendTimeoutMs);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<null>((res) => (timer = setTimeout(res, budget, null)));
    const res = await Promise.race([messages.send(r.items, now + budget), late]);
    clearTimeout(timer);
    return res;
  },
};
const impl = Object.fromEntries(LogicService.methods.map((m) => [m, m === "send" ? handler.send : async () => null])) as unknown as LogicApi;
const auth = new ClusterAuth(["bench-secret-bench-secret-bench-secret-0123"]);
const registry = new Registry();
const withAuth = await startServer((s) => addService(s, LogicService, instrumentServer(LogicService, impl, registry), log), "127.0.0.1", 0, { auth });
const bare = await startServer((s) => addService(s, LogicService, impl, log), "127.0.0.1", 0);
const clients: Record<string, Pick<Client<LogicApi>, "send">> = {
  direct: { send: (r) => messages.send(r.items, Date.now() + config.sendTimeoutMs) as never },
  bare: makeClient<LogicApi>(LogicService, `127.0.0.1:${bare.port}`),
  grpc: instrumentClient(LogicService, makeClient<LogicApi>(LogicService, `127.0.0.1:${withAuth.port}`, 5000, auth), registry),
};

async function redisCpuSec(): Promise<number> {
  const info = await admin.info("cpu");
  const get = (k: string) => Number(new RegExp(`^${k}:([\\d.]+)`, "m").exec(info)?.[1]);
  return get("used_cpu_user") + get("used_cpu_sys");
}

const item = sendStream();
async function run(c: Pick<Client<LogicApi>, "send">, batch: number, calls: number) {
  const prepared = Array.from({ length: calls }, () => Array.from({ length: batch }, item));
  let errors = 0;
  const pending: Promise<void>[] = [];
  const cpu0 = process.cpuUsage();
  const r0 = await redisCpuSec();
  const t0 = performance.now();
  for (let k = 0; k < calls; k++) {
    const wait = t0 + (k * 1000) / rate - performance.now();
    if (wait >= 1) await Bun.sleep(wait);
    pending.push(
      c.send({ items: prepared[k], budgetMs: 4500 }).then(
        (res) => void (errors += res.filter((x) => !x.ok).length),
        () => void (errors += batch),
      ),
    );
  }
  await Promise.all(pending);
  const cpu = process.cpuUsage(cpu0);
  const rcpu = (await redisCpuSec()) - r0;
  const us = cpu.user + cpu.system;
  return { batch, calls, errors, bunUsPerCall: Math.round(us / calls), bunUsPerMsg: Math.round(us / calls / batch), redisUsPerCall: Math.round((rcpu * 1e6) / calls), redisUsPerMsg: Math.round((rcpu * 1e6) / calls / batch) };
}

try {
  const variants = o.variants.split(",");
  for (const v of variants) await run(clients[v], 2, 500); // warm-up
  for (let round = 1; round <= Number(o.rounds); round++)
    for (const batch of o.batches.split(",").map(Number))
      for (const v of variants) console.log(JSON.stringify({ round, variant: v, rate, ...(await run(clients[v], batch, Number(o.calls))) }));
} finally {
  for (const c of Object.values(clients)) (c as { close?: () => void }).close?.();
  withAuth.server.forceShutdown();
  bare.server.forceShutdown();
  redis.disconnect();
  admin.disconnect();
  server.kill();
}
