// Micro-benchmark of one task worker at a steady rate: a producer appends room messages to the
// partition streams the way logic does (XADD + pending ZADD, a pipeline every 10 ms), one
// TaskWorker pushes them to 2 fake connect instances (real gRPC servers registered in etcd, from
// test/task-helpers.ts) and persists them to MySQL, against the shared test infrastructure
// (redis-server, mariadbd, etcd in a temp folder, stopped at the end). Everything but the
// infrastructure runs in this one process, so its CPU is the worker's plus the fakes' and the
// producer's: compare runs, not absolute numbers.
//
// One JSON line per partition count and round: messages/s actually produced, CPU of this process
// per message (process.cpuUsage, every thread) and in % of one core, push calls per connect
// instance, and the acceptance → delivery lag at the fakes (ms resolution). The partition counts
// of one run are that run's baseline for each other.
// Usage: bun bench/task-steady.ts [--rate 2500] [--seconds 8] [--rounds 2] [--partitions 8,2]
import { parseArgs } from "node:util";
import { roomConv } from "../src/shared/protocol.ts";
import { PERSIST_GROUP } from "../src/task/worker.ts";
import { stopSharedInfra } from "../test/support/infra.ts";
import { Scope, uniq, user, waitFor } from "../test/task-helpers.ts";
import { newHistogram, report, summary } from "./lib.ts";

const { values: o } = parseArgs({
  options: {
    rate: { type: "string", default: "2500" },
    seconds: { type: "string", default: "8" },
    rounds: { type: "string", default: "2" },
    partitions: { type: "string", default: "8,2" },
  },
});
const RATE = Number(o.rate);
const SECONDS = Number(o.seconds);
const TICK_MS = 10;
const perTick = Math.max(1, Math.round((RATE * TICK_MS) / 1000));

async function round(partitions: number, no: number): Promise<void> {
  const s = await Scope.create({ streamPartitions: partitions });
  try {
    const fakes = [await s.connect(), await s.connect()];
    const sender = user();
    const rooms = Array.from({ length: 100 }, () => uniq("b"));
    for (const r of rooms) await s.redis.hset(s.keys.roomInstances(r), fakes[0].id, 1, fakes[1].id, 1);
    await s.worker();
    const body = "x".repeat(64);
    let sent = 0;
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await new Promise<void>((done) => {
      const iv = setInterval(() => {
        const items = Array.from({ length: perTick }, (_, i) => ({ conv: roomConv(rooms[(sent + i) % rooms.length]), from: sender, body }));
        sent += perTick;
        void s.sendBulk(items);
        if (performance.now() - t0 >= SECONDS * 1000) {
          clearInterval(iv);
          done();
        }
      }, TICK_MS);
    });
    const produceMs = performance.now() - t0;
    await waitFor(() => fakes.every((f) => f.received.length >= sent), 60_000, "pushed");
    await waitFor(() => s.groupDone(PERSIST_GROUP), 60_000, "persisted");
    const cpu = process.cpuUsage(c0);
    const ms = performance.now() - t0;
    const lag = newHistogram();
    for (const f of fakes) for (const l of f.lags) lag.recordValue(Math.max(1, l * 1000));
    report({
      partitions,
      round: no,
      targetRate: RATE,
      producedPerSec: Math.round(sent / (produceMs / 1000)),
      messages: sent,
      cpuUsPerMsg: Math.round((cpu.user + cpu.system) / sent),
      cpuPct: Math.round((cpu.user + cpu.system) / ms / 10),
      pushCallsPerInstance: fakes[0].calls,
      lagMs: summary(lag),
    });
  } finally {
    await s.close();
  }
}

try {
  for (let r = 1; r <= Number(o.rounds); r++) for (const p of String(o.partitions).split(",").map(Number)) await round(p, r);
} finally {
  await stopSharedInfra();
}
process.exit(0);
