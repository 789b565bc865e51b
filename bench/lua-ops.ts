// Cost inside Redis of the single commands the send script runs once per call, paced (one call,
// then 1 ms idle: cold caches, as at a real cluster's call rate) and in a burst (2,000 at once),
// from INFO commandstats (µs of wall time inside EVAL, and inside the nested INFO).
// Usage: bun bench/lua-ops.ts   (starts its own redis-server on a free port, stops it by pid)
import Redis from "ioredis";
import { startScratchRedis } from "./lib.ts";
const { port, stop } = await startScratchRedis();
const r = new Redis(port);
const scripts: Record<string, string> = {
  nop: "return 1",
  info: "return string.match(redis.call('INFO','server'),'run_id:(%x+)')",
  info2: "local i = redis.call('INFO','server','replication') return string.match(i,'run_id:(%x+)') .. string.match(i,'master_replid:(%x+)')",
  inforepl: "return string.match(redis.call('INFO','replication'),'master_replid:(%x+)')",
  time: "return redis.call('TIME')[1]",
  hget: "return redis.call('HGET', 'x', 'ep')",
};
async function stat(): Promise<Record<string, { calls: number; usec: number }>> {
  const out: Record<string, any> = {};
  for (const m of (await r.info("commandstats")).matchAll(/^cmdstat_(\w+):calls=(\d+),usec=(\d+)/gm)) out[m[1]] = { calls: +m[2], usec: +m[3] };
  return out;
}
for (let round = 0; round < 3; round++)
  for (const [name, lua] of Object.entries(scripts)) {
    for (const mode of ["paced", "burst"]) {
      const s0 = await stat();
      const n = 2000;
      if (mode === "paced") for (let i = 0; i < n; i++) { await r.eval(lua, 0); await Bun.sleep(1); }
      else await Promise.all(Array.from({ length: n }, () => r.eval(lua, 0)));
      const s1 = await stat();
      const d = (k: string) => ((s1[k]?.usec ?? 0) - (s0[k]?.usec ?? 0)) / n;
      console.log(JSON.stringify({ round, name, mode, evalUsPerCall: +d("eval").toFixed(2), infoUs: +d("info").toFixed(2) }));
    }
  }
r.disconnect();
stop();
