// Micro-benchmark of the persist group's MySQL writes: PersistHandler.handle on prebuilt batches
// of packed message events (as the persist consumer reads them from a partition stream), against
// a real MariaDB started here (bunchat's local infra in a temp folder; stopped and deleted at the
// end, also on error and Ctrl-C). No Redis round trip: the returned AckHook runs on a stub.
//
// Per batch size and round: TRUNCATE messages, a short warm-up, then --rows rows in batches of
// that size, --concurrency handlers at a time (one per partition, sharing one pool as the
// partitions of a task worker do). One JSON line per step: rows/s, CPU per row of this Bun
// process (process.cpuUsage, every thread) and of mariadbd (/proc) in µs, their CPU in % of one
// core, and othersCpuPct: what the rest of the box used meanwhile (the numbers are only
// comparable between runs with little of it).
// Usage: bun bench/persist.ts [--batches 50,500] [--rows 100000] [--concurrency 1] [--rounds 2]
//        [--body-bytes 64] [--convs 100]
// --batches: "500" = every batch 500 entries; "1-500" = uniformly random sizes (fixed seed), as
// the persist group's partial batches under linger are.
import { parseArgs } from "node:util";
import { mkdtempSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { startInfra } from "../src/infra/index.ts";
import { openDb } from "../src/shared/db/index.ts";
import { redisKeys } from "../src/shared/keys.ts";
import { createLogger, silentLogger } from "../src/shared/log.ts";
import { newRegistry } from "../src/shared/ops.ts";
import { encodeEvent } from "../src/shared/stream.ts";
import type { AckHook } from "../src/task/acks.ts";
import type { StreamEntry } from "../src/task/consumer.ts";
import { taskMetrics } from "../src/task/metrics.ts";
import { PersistHandler } from "../src/task/persist.ts";
import { CLK_TCK, machineBusyPct, report, sampleCpu, sampleMachine } from "./lib.ts";

const { values: o } = parseArgs({
  options: {
    batches: { type: "string", default: "50,500" },
    rows: { type: "string", default: "100000" },
    concurrency: { type: "string", default: "1" },
    rounds: { type: "string", default: "2" },
    "body-bytes": { type: "string", default: "64" },
    convs: { type: "string", default: "100" },
  },
});
const BATCHES = String(o.batches).split(",");
const ROWS = Number(o.rows);
const CONCURRENCY = Number(o.concurrency);
const ROUNDS = Number(o.rounds);
const BODY_BYTES = Number(o["body-bytes"]);
const CONVS = Number(o.convs);
const WARMUP_ROWS = 5000;

const dataDir = mkdtempSync(join(tmpdir(), "bunchat-bench-persist-"));
const infra = await startInfra({ dataDir, log: createLogger({ level: "warn", base: { bench: "persist" } }), keepData: false });
const handle = openDb(infra.mysqlUrl);
const stopAll = async () => {
  await handle.close().catch(() => {});
  await infra.stop();
};
for (const sig of ["SIGINT", "SIGTERM"] as const) process.once(sig, () => void stopAll().finally(() => process.exit(130)));

const keys = redisKeys("bench:");
const metrics = taskMetrics(newRegistry("task"));
// Both db and pool, so the script also runs against revisions whose PersistOptions took the drizzle db.
const opts = { db: handle.db, pool: handle.pool, keys, metrics, log: silentLogger, stream: keys.stream(0) };
const handler = new PersistHandler(opts);
const ackStub = { zremrangebyscore: () => ackStub } as unknown as Parameters<AckHook>[0];

let nextId = BigInt(Date.now()) << 20n;
const seqs = new Map<string, number>();

let seed = 1;
const random = () => ((seed = (seed * 16807) % 2147483647) - 1) / 2147483646;

/** `rows` message entries in batches sized by `spec`, conversations round-robin within the partition. */
function makeBatches(partition: number, rows: number, spec: string): StreamEntry[][] {
  const [lo, hi = lo] = spec.split("-").map(Number);
  const size = () => lo + Math.floor(random() * (hi - lo + 1));
  const out: StreamEntry[][] = [];
  let cur: StreamEntry[] = [];
  let batch = size();
  const filler = "x".repeat(BODY_BYTES);
  for (let i = 0; i < rows; i++) {
    const conv = `room:bench-${partition}-${i % CONVS}`;
    const seq = (seqs.get(conv) ?? 0) + 1;
    seqs.set(conv, seq);
    const id = String(nextId++);
    const body = `${i}:${filler}`.slice(0, BODY_BYTES);
    const uid = 1 + (i % 1000);
    const d = encodeEvent({ t: "m", id, conv, from: { userId: uid, userName: `user${uid}` }, body, ts: Date.now(), ...(i % 2 ? { cmid: crypto.randomUUID() } : {}) });
    cur.push({ id: `${i}-0`, d, n: seq });
    if (cur.length === batch) {
      out.push(cur);
      cur = [];
      batch = size();
    }
  }
  if (cur.length) out.push(cur);
  return out;
}

/** Handles each partition's batches in order, the partitions concurrently; returns the entries handled. */
async function run(partitions: StreamEntry[][][]): Promise<number> {
  let handled = 0;
  await Promise.all(
    partitions.map(async (batches) => {
      for (const b of batches) {
        const hook = await handler.handle(b);
        hook?.(ackStub);
        handled += b.length;
      }
    }),
  );
  return handled;
}

/** CPU ticks (utime + stime) mariadbd has used so far. */
function mysqlTicks(): number {
  const pid = infra.mysql.pid;
  const ticks = pid === undefined ? undefined : sampleCpu([pid]).ticks.get(pid);
  if (ticks === undefined) throw new Error("mariadbd is not running");
  return ticks;
}

const count = async () => Number(((await handle.pool.query("SELECT COUNT(*) AS n FROM messages"))[0] as { n: string }[])[0].n);

try {
  for (let round = 1; round <= ROUNDS; round++) {
    for (const batch of BATCHES) {
      await handle.pool.query("TRUNCATE TABLE messages");
      const part = (rows: number) => Array.from({ length: CONCURRENCY }, (_, p) => makeBatches(p, Math.ceil(rows / CONCURRENCY), batch));
      const warm = await run(part(WARMUP_ROWS));
      const work = part(ROWS);
      Bun.gc(true);
      const cpu0 = process.cpuUsage();
      const my0 = mysqlTicks();
      const box0 = sampleMachine();
      const from = Date.now();
      const t0 = performance.now();
      const rows = await run(work);
      const ms = performance.now() - t0;
      const to = Date.now();
      const cpu = process.cpuUsage(cpu0);
      const my = mysqlTicks() - my0;
      const boxPct = machineBusyPct(box0, sampleMachine(), availableParallelism());
      const bunUs = cpu.user + cpu.system;
      const mariadbUs = (my / CLK_TCK) * 1e6;
      const pct = (us: number) => Math.round((us / 1000 / ms) * 100);
      const stored = await count();
      if (stored !== warm + rows) throw new Error(`stored ${stored} rows, expected ${warm + rows}`);
      report({
        step: "persist",
        round,
        batch,
        concurrency: CONCURRENCY,
        bodyBytes: BODY_BYTES,
        rows,
        ms: Math.round(ms),
        rowsPerSec: Math.round(rows / (ms / 1000)),
        bunCpuUsPerRow: +(bunUs / rows).toFixed(2),
        bunCpuPct: pct(bunUs),
        mariadbCpuUsPerRow: +(mariadbUs / rows).toFixed(2),
        mariadbCpuPct: pct(mariadbUs),
        othersCpuPct: Math.max(0, boxPct - pct(bunUs) - pct(mariadbUs)),
        window: [from, to],
      });
    }
  }
} finally {
  await stopAll();
}
