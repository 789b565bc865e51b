// Redis memory per clientMsgId idempotency key, as logic's send script writes one per message
// sent with a clientMsgId (the web client sends one with every message): SET <idem key>
// "<id>|<seq>|<ts>" EX 86400 (CONTRACT.md's 24 h window). Key names from src/shared/keys.ts, a
// UUID clientMsgId (what src/client sends), snowflake-sized ids; used_memory before and after.
// Prints one JSON line: keys, bytes per key, and what 24 h at 50,000 msgs/s would hold.
// Usage: bun bench/idem-memory.ts [--keys 1000000]   (starts its own redis-server on a free port, stops it by pid)
import Redis from "ioredis";
import { parseArgs } from "node:util";
import { startScratchRedis } from "./lib.ts";
import { redisKeys } from "../src/shared/keys.ts";

const { values: o } = parseArgs({ options: { keys: { type: "string", default: "1000000" } } });
const N = Number(o.keys);
const { port, stop } = await startScratchRedis();
try {
  const r = new Redis(port);
  const keys = redisKeys("im:");
  const used = async () => Number(/used_memory:(\d+)/.exec(await r.info("memory"))![1]);
  const before = await used();
  const CHUNK = 10_000;
  for (let i = 0; i < N; i += CHUNK) {
    const p = r.pipeline();
    for (let j = i; j < Math.min(N, i + CHUNK); j++) {
      const id = String(7_300_000_000_000_000_000n + BigInt(j));
      const ts = 1_796_000_000_000 + j;
      p.set(keys.idem(100_000 + (j % 50_000), `room:lobby${j % 1000}`, crypto.randomUUID()), `${id}|${j}|${ts}`, "EX", 86_400);
    }
    await p.exec();
  }
  const bytesPerKey = (await used() - before) / N;
  const perDay = 50_000 * 86_400;
  console.log(JSON.stringify({ keys: await r.dbsize(), bytesPerKey: Math.round(bytesPerKey), gibAt50kPerSecFor24h: Math.round((bytesPerKey * perDay) / 2 ** 30) }));
  r.disconnect();
} finally {
  stop();
}
