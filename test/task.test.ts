// Task tier against real redis-server, mariadbd and etcd: routing, order, persistence, trimming.
import { describe, expect, test } from "bun:test";
import type { PushEvent } from "../proto/connect.ts";
import { dmConv, roomConv } from "../src/shared/protocol.ts";
import { PERSIST_GROUP, PUSH_GROUP, type TaskWorker } from "../src/task/worker.ts";
import { scopedCreator, uniq, user, waitFor } from "./task-helpers.ts";

const scope = scopedCreator();

/** A histogram's _count as a worker's registry reports it at a scrape. */
async function countOf(w: TaskWorker, histogram: string): Promise<number | undefined> {
  const values = (await w.registry.getSingleMetric(histogram)!.get()).values as { metricName?: string; value: number }[];
  return values.find((v) => v.metricName === `${histogram}_count`)?.value;
}

const msgs = (evs: PushEvent[]) => evs.filter((e): e is Extract<PushEvent, { t: "m" }> => e.t === "m");

describe("task push routing", () => {
  test("delivers each event to exactly the instances that hold its recipients", async () => {
    const s = await scope();
    const [a, b, c] = [await s.connect(), await s.connect(), await s.connect()];
    const room = uniq("r");
    const [u1, u2, u3] = [user(), user(), user()];
    // A ghost instance (in the routing hash, not in etcd) must be skipped, not block the partition.
    await s.redis.hset(s.keys.roomInstances(room), a.id, 1, b.id, 2, "connect-ghost", 1);
    await s.redis.hset(s.keys.userInstances(u1.userId), a.id, 1);
    await s.redis.hset(s.keys.userInstances(u2.userId), c.id, 1, "connect-ghost", 1);
    await s.redis.hset(s.keys.userInstances(u3.userId), b.id, 1);
    const w = await s.worker();

    await s.send(roomConv(room), u1, "to the room");
    await s.send(dmConv(u1.userId, u2.userId), u1, "to u2");
    await s.send(dmConv(u3.userId, u3.userId), u3, "note to self");
    await s.presence(room, "join", u3, 3);
    await s.kick(u2.userId, "sid-1");

    await waitFor(() => s.groupDone(PUSH_GROUP), 10_000, "push group drained");
    const summary = (evs: PushEvent[]) =>
      evs
        .map((e) => (e.t === "m" ? `m:${e.msg.conv}:${e.room ?? ""}:${e.users?.join(",") ?? ""}` : e.t === "p" ? `p:${e.p.room}:${e.p.onlineCount}` : e.t === "k" ? `k:${e.userId}:${e.sid}` : e.t))
        .sort();
    const dm12 = dmConv(u1.userId, u2.userId);
    const dm33 = dmConv(u3.userId, u3.userId);
    expect(summary(a.received)).toEqual([`m:${dm12}::${u1.userId},${u2.userId}`, `m:room:${room}:${room}:`, `p:${room}:3`].sort());
    expect(summary(b.received)).toEqual([`m:${dm33}::${u3.userId}`, `m:room:${room}:${room}:`, `p:${room}:3`].sort());
    expect(summary(c.received)).toEqual([`k:${u2.userId}:sid-1`, `m:${dm12}::${u1.userId},${u2.userId}`].sort());
    const m = msgs(a.received).find((e) => e.room)!.msg;
    expect(m).toMatchObject({ conv: roomConv(room), seq: 1, from: u1, body: "to the room" });
    // The push group's metrics (tallies, handed to prom-client at scrape time) count what happened.
    const values = async (name: string) => (await w.registry.getSingleMetric(name)!.get()).values.map((v) => [JSON.stringify(v.labels), v.value]);
    expect(Object.fromEntries(await values("bunchat_task_events_pushed_total"))).toEqual({ '{"type":"m"}': 3, '{"type":"p"}': 1, '{"type":"k"}': 1 });
    expect(Object.fromEntries(await values("bunchat_task_push_deliveries_total"))['{"result":"ok"}']).toBe(8);
    expect(await countOf(w, "bunchat_task_push_lag_seconds")).toBe(3); // one per message
  });

  test("keeps per-conversation order across 2 workers, 200 messages each, no duplicates", async () => {
    const s = await scope({ streamPartitions: 8 });
    const x = await s.connect();
    const [w1, w2] = [await s.worker(), await s.worker()];
    await waitFor(() => w1.ownedPartitions().length + w2.ownedPartitions().length === 8 && w1.ownedPartitions().length > 0 && w2.ownedPartitions().length > 0, 10_000, "partitions split");
    const sender = user();
    const rooms = Array.from({ length: 10 }, () => uniq("o"));
    for (const r of rooms) await s.redis.hset(s.keys.roomInstances(r), x.id, 1);
    const t0 = performance.now();
    // Interleaved rounds (one message per room) paced at ~2000 messages/s, so batches mix
    // conversations and partitions and the lag measured is that of live traffic, not of a backlog.
    for (let i = 0; i < 200; i++) {
      await Promise.all(rooms.map((r) => s.send(roomConv(r), sender, `m${i}`)));
      await Bun.sleep(5);
    }
    const total = rooms.length * 200;
    await waitFor(() => x.received.length >= total, 30_000, "all messages pushed");
    const ms = performance.now() - t0;
    for (const r of rooms) {
      const seqs = msgs(x.received).filter((e) => e.room === r).map((e) => e.msg.seq);
      expect(seqs).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
    }
    await waitFor(() => s.groupDone(PUSH_GROUP), 10_000, "push group drained");
    expect(x.received.length).toBe(total);
    const lags = x.lags.sort((a, b) => a - b);
    const pct = (q: number) => lags[Math.min(lags.length - 1, Math.floor(q * lags.length))];
    console.log(JSON.stringify({ test: "order", messages: total, pushCalls: x.calls, ms: Math.round(ms), lagMsP50: pct(0.5), lagMsP99: pct(0.99) }));
  });
});

describe("task throughput", () => {
  test("drains a backlog of 20,000 messages in 50 rooms with 2 workers, in order, persisted once", async () => {
    const s = await scope({ streamPartitions: 8 });
    const x = await s.connect();
    const sender = user();
    const rooms = Array.from({ length: 50 }, () => uniq("b"));
    for (const r of rooms) await s.redis.hset(s.keys.roomInstances(r), x.id, 1);
    const per = 400;
    const body = "x".repeat(100);
    for (let i = 0; i < per; i += 50) await s.sendBulk(rooms.flatMap((r) => Array.from({ length: 50 }, () => ({ conv: roomConv(r), from: sender, body }))));
    const total = rooms.length * per;
    const t0 = performance.now();
    await Promise.all([s.worker(), s.worker()]);
    await waitFor(() => x.received.length >= total, 60_000, "backlog pushed");
    const pushMs = performance.now() - t0;
    await waitFor(async () => {
      const [rows] = await s.db.pool.query("SELECT COUNT(*) AS n FROM messages WHERE conv IN (?)", [rooms.map(roomConv)]);
      return Number((rows as { n: number }[])[0].n) === total;
    }, 60_000, "backlog persisted");
    const persistMs = performance.now() - t0;
    for (const r of rooms) {
      const seqs = msgs(x.received).filter((e) => e.room === r).map((e) => e.msg.seq);
      expect(seqs).toEqual(Array.from({ length: per }, (_, i) => i + 1));
    }
    // Batched across partitions: never one call per message.
    expect(x.calls).toBeLessThan(total / 100);
    console.log(JSON.stringify({ test: "backlog", messages: total, pushCalls: x.calls, pushMs: Math.round(pushMs), pushPerSec: Math.round(total / (pushMs / 1000)), persistMs: Math.round(persistMs), persistPerSec: Math.round(total / (persistMs / 1000)) }));
  });
});

describe("task persistence", () => {
  test("writes each message exactly once, also when replayed, and cleans the pending zsets", async () => {
    const s = await scope({ streamPartitions: 2 });
    const w = await s.worker({ trimIntervalMs: 600_000 });
    const sender = user();
    const convs = [roomConv(uniq("p")), dmConv(sender.userId, sender.userId + 1)];
    for (const conv of convs) for (let i = 0; i < 150; i++) await s.send(conv, sender, `body ${i} ✓`);
    for (const conv of convs) {
      await waitFor(async () => (await s.rows(conv)).length === 150, 15_000, `rows of ${conv}`);
      await waitFor(async () => (await s.redis.zcard(s.keys.pending(conv))) === 0, 5_000, "pending zset cleaned");
    }
    const before = await Promise.all(convs.map((c) => s.rows(c)));
    const persisted = async () => (await w.registry.getSingleMetric("bunchat_task_rows_persisted_total")!.get()).values[0]?.value ?? 0;
    expect(await persisted()).toBe(300);
    expect(await countOf(w, "bunchat_persist_delay_seconds")).toBe(300);

    // Replay: rewind the persist group to the start and re-append some entries (as a logic retry would).
    await waitFor(() => s.groupDone(PERSIST_GROUP), 5_000, "persist drained");
    for (let p = 0; p < 2; p++) await s.redis.xgroup("SETID", s.keys.stream(p), PERSIST_GROUP, "0");
    await waitFor(() => s.groupDone(PERSIST_GROUP), 10_000, "replay drained");
    for (const conv of convs) {
      const after = await s.rows(conv);
      expect(after).toEqual(before[convs.indexOf(conv)]);
      expect(after.map((r) => r.seq)).toEqual(Array.from({ length: 150 }, (_, i) => i + 1));
      expect(after[3].body).toBe("body 3 ✓");
    }
    expect(await persisted()).toBe(300);
  });

  test("presence and kick events are acked by the persist group without rows", async () => {
    const s = await scope({ streamPartitions: 1 });
    await s.worker();
    const room = uniq("k");
    await s.presence(room, "join", user(), 1);
    await s.kick(user().userId, "sid");
    await waitFor(() => s.groupDone(PERSIST_GROUP), 10_000, "persist drained");
    expect(await s.rows(roomConv(room))).toEqual([]);
  });
});

describe("task trimming", () => {
  test("trims only below what both groups acked", async () => {
    const s = await scope({ streamPartitions: 1 });
    const x = await s.connect();
    const room = uniq("t");
    await s.redis.hset(s.keys.roomInstances(room), x.id, 1);
    await s.worker({ trimIntervalMs: 100 });
    const conv = roomConv(room);
    const u = user();
    for (let i = 0; i < 30; i++) await s.send(conv, u, `a${i}`);
    await waitFor(() => x.received.length === 30, 10_000, "first batch");
    x.failing = true;
    await s.send(conv, u, "b0");
    const firstB = (await s.redis.xrevrange(s.keys.stream(0), "+", "-", "COUNT", 1))[0][0];
    for (let i = 1; i < 20; i++) await s.send(conv, u, `b${i}`);
    // Persist acks all 50; push holds b0..b19 pending: the stream keeps exactly those.
    await waitFor(async () => (await s.rows(conv)).length === 50, 10_000, "persisted");
    await waitFor(async () => (await s.redis.xlen(s.keys.stream(0))) === 20, 10_000, "trimmed to the unacked entries");
    const first = (await s.redis.xrange(s.keys.stream(0), "-", "+", "COUNT", 1))[0][0];
    expect(first).toBe(firstB);
    x.failing = false;
    await waitFor(() => x.received.length === 50, 15_000, "pending batch delivered after recovery");
    expect(msgs(x.received).map((e) => e.msg.seq)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    await waitFor(async () => (await s.redis.xlen(s.keys.stream(0))) <= 1, 10_000, "trimmed after everything was acked");
  });
});
