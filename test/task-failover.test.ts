// Task tier failures against real processes: a worker stopped, a worker process killed with
// SIGKILL, a lease revoked, MySQL stopped and started again.
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { Etcd3 } from "etcd3";
import type { PushEvent } from "../proto/connect.ts";
import { roomConv } from "../src/shared/protocol.ts";
import { PERSIST_GROUP, PUSH_GROUP } from "../src/task/worker.ts";
import { scopedCreator, uniq, user, waitFor, type FakeConnect, type Scope } from "./task-helpers.ts";

const scope = scopedCreator();

/** Rooms routed to x, at least one per partition so every partition has work. */
async function roomsOnAllPartitions(s: Scope, x: FakeConnect): Promise<string[]> {
  const { partitionOf } = await import("../src/shared/keys.ts");
  const byPart = new Map<number, string>();
  while (byPart.size < s.config.streamPartitions) {
    const r = uniq("f");
    byPart.set(partitionOf(roomConv(r), s.config.streamPartitions), r);
  }
  const rooms = [...byPart.values()];
  for (const r of rooms) await s.redis.hset(s.keys.roomInstances(r), x.id, 1);
  return rooms;
}

function expectInOrder(received: PushEvent[], rooms: string[], n: number) {
  for (const r of rooms) {
    const seqs = received.flatMap((e) => (e.t === "m" && e.room === r ? [e.msg.seq] : []));
    expect(seqs).toEqual(Array.from({ length: n }, (_, i) => i + 1));
  }
}

/** Consumers holding pending entries of a group, over all partitions. */
async function pendingOwners(s: Scope, group: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (let p = 0; p < s.config.streamPartitions; p++) {
    const stream = s.keys.stream(p);
    if (!(await s.redis.exists(stream))) continue;
    const [, , , consumers] = (await s.redis.xpending(stream, group).catch(() => [0, null, null, null])) as [number, string, string, [string, string][] | null];
    for (const [c, n] of consumers ?? []) out.set(c, (out.get(c) ?? 0) + Number(n));
  }
  return out;
}

async function lockHolders(s: Scope): Promise<Record<string, string>> {
  const etcd = new Etcd3({ hosts: s.config.etcdEndpoints });
  try {
    return await etcd.getAll().prefix(`${s.config.etcdPrefix}/partitions/`).strings();
  } finally {
    etcd.close();
  }
}

describe("task failover", () => {
  test("a stopped worker's partitions and pending entries are taken over", async () => {
    const s = await scope();
    const x = await s.connect();
    const rooms = await roomsOnAllPartitions(s, x);
    const w1 = await s.worker({ id: "task-w1" });
    expect(w1.ownedPartitions()).toEqual([0, 1, 2, 3]);
    x.failing = true;
    const u = user();
    for (let i = 0; i < 40; i++) for (const r of rooms) await s.send(roomConv(r), u, `m${i}`);
    await waitFor(async () => ((await pendingOwners(s, PUSH_GROUP)).get("task-w1") ?? 0) >= rooms.length, 10_000, "w1 holds pending entries");

    const w2 = await s.worker({ id: "task-w2" });
    const t0 = performance.now();
    await w1.stop();
    await waitFor(() => w2.ownedPartitions().length === 4, 5_000, "w2 owns every partition");
    const takeoverMs = performance.now() - t0;
    x.failing = false;
    await waitFor(() => x.received.length >= rooms.length * 40, 20_000, "all delivered");
    await waitFor(() => s.groupDone(PUSH_GROUP), 10_000, "push drained");
    expect(x.received.length).toBe(rooms.length * 40);
    expectInOrder(x.received, rooms, 40);
    expect((await pendingOwners(s, PUSH_GROUP)).get("task-w1") ?? 0).toBe(0);
    // The former owner's consumer names are gone from the groups.
    for (let p = 0; p < 4; p++) {
      const names = ((await s.redis.xinfo("CONSUMERS", s.keys.stream(p), PUSH_GROUP)) as unknown[][]).map((c) => String(c[1]));
      expect(names).toEqual(["task-w2"]);
    }
    for (const r of rooms) await waitFor(async () => (await s.rows(roomConv(r))).length === 40, 10_000, "persisted");
    console.log(JSON.stringify({ test: "graceful takeover", takeoverMs: Math.round(takeoverMs) }));
  });

  test("a SIGKILLed worker process: its partitions and pending entries are taken over after its lease expires", async () => {
    const s = await scope();
    const x = await s.connect();
    const rooms = await roomsOnAllPartitions(s, x);
    const child = Bun.spawn([process.execPath, join(import.meta.dir, "../src/bin/task.ts")], {
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        IM_REDIS_URL: s.config.redisUrl,
        IM_MYSQL_URL: s.config.mysqlUrl,
        IM_ETCD_ENDPOINTS: s.config.etcdEndpoints.join(","),
        IM_ETCD_PREFIX: s.config.etcdPrefix,
        IM_REDIS_PREFIX: s.config.redisPrefix,
        IM_STREAM_PARTITIONS: String(s.config.streamPartitions),
        IM_LEASE_TTL: String(s.config.leaseTtlSec),
        IM_METRICS_PORT: "0",
        IM_LOG_LEVEL: "info",
      },
      stdout: "ignore",
      stderr: "pipe",
    });
    let logs = "";
    void (async () => {
      for await (const chunk of child.stderr) logs += new TextDecoder().decode(chunk);
    })();
    try {
      const port = await waitFor(() => /"msg":"task ready".*"metricsPort":(\d+)/.exec(logs)?.[1], 15_000, "child ready");
      expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
      expect(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()).toContain("bunchat_task_owned_partitions");
      const childId = await waitFor(async () => {
        const locks = Object.values(await lockHolders(s));
        return locks.length === 4 && new Set(locks).size === 1 ? locks[0] : undefined;
      }, 10_000, "child owns every partition");

      x.failing = true;
      const u = user();
      for (let i = 0; i < 30; i++) for (const r of rooms) await s.send(roomConv(r), u, `m${i}`);
      await waitFor(async () => ((await pendingOwners(s, PUSH_GROUP)).get(childId) ?? 0) >= rooms.length, 10_000, "child holds pending entries");

      child.kill("SIGKILL");
      await child.exited;
      const t0 = performance.now();
      const w2 = await s.worker({ id: "task-after-kill" });
      await waitFor(() => w2.ownedPartitions().length === 4, (s.config.leaseTtlSec + 5) * 1000, "survivor owns every partition");
      const takeoverMs = performance.now() - t0;
      x.failing = false;
      await waitFor(() => x.received.length >= rooms.length * 30, 20_000, "all delivered");
      await waitFor(() => s.groupDone(PUSH_GROUP), 10_000, "push drained");
      expect(x.received.length).toBe(rooms.length * 30);
      expectInOrder(x.received, rooms, 30);
      for (const r of rooms) await waitFor(async () => (await s.rows(roomConv(r))).length === 30, 10_000, "persisted");
      console.log(JSON.stringify({ test: "SIGKILL takeover", leaseTtlSec: s.config.leaseTtlSec, takeoverMs: Math.round(takeoverMs) }));
      expect(takeoverMs).toBeLessThan((s.config.leaseTtlSec + 2) * 1000);
    } finally {
      child.kill("SIGKILL");
      await child.exited;
    }
  });

  test("a revoked lease stops the worker's partitions; it re-registers and takes them back", async () => {
    const s = await scope({ streamPartitions: 2 });
    const x = await s.connect();
    const rooms = await roomsOnAllPartitions(s, x);
    const w = await s.worker({ id: "task-revoked" });
    const etcd = new Etcd3({ hosts: s.config.etcdEndpoints });
    try {
      const key = `${s.config.etcdPrefix}/partitions/0`;
      const before = (await etcd.get(key).exec()).kvs[0].lease;
      await etcd.leaseClient.leaseRevoke({ ID: before });
      await waitFor(async () => {
        const kv = (await etcd.get(key).exec()).kvs[0];
        return kv && kv.lease !== before && kv.value.toString() === "task-revoked";
      }, 10_000, "lock re-taken under a new lease");
      await waitFor(() => w.ownedPartitions().length === 2, 5_000, "owns both again");
      const u = user();
      for (const r of rooms) await s.send(roomConv(r), u, "after");
      await waitFor(() => x.received.length === rooms.length, 10_000, "delivered after re-registration");
    } finally {
      etcd.close();
    }
  });
});

describe("task push when a connect instance crashes", () => {
  test("the other instances keep receiving; the dead one is skipped once its lease expires", async () => {
    const s = await scope({ streamPartitions: 1 });
    const [a, b] = [await s.connect(), await s.connect()];
    const room = uniq("c");
    await s.redis.hset(s.keys.roomInstances(room), a.id, 1, b.id, 1);
    await s.worker();
    const u = user();
    await s.send(roomConv(room), u, "before");
    await waitFor(() => a.received.length === 1 && b.received.length === 1, 10_000, "both got the first");
    await a.crash();
    const t0 = performance.now();
    for (let i = 0; i < 20; i++) await s.send(roomConv(room), u, `after ${i}`);
    await waitFor(() => b.received.length === 21, (s.config.leaseTtlSec + 5) * 1000, "b got the rest");
    const stallMs = performance.now() - t0;
    expectInOrder(b.received, [room], 21);
    expect(a.received.length).toBe(1);
    console.log(JSON.stringify({ test: "connect crash", leaseTtlSec: s.config.leaseTtlSec, stallMs: Math.round(stallMs) }));
    expect(stallMs).toBeLessThan((s.config.leaseTtlSec + 2) * 1000);
  });
});

describe("task persistence while MySQL is down", () => {
  test("nothing is acked while MySQL is stopped; everything is persisted once it is back", async () => {
    const s = await scope({ streamPartitions: 2 });
    const x = await s.connect();
    const rooms = await roomsOnAllPartitions(s, x);
    await s.worker();
    await s.infra.mysql.stop();
    try {
      const u = user();
      for (let i = 0; i < 50; i++) for (const r of rooms) await s.send(roomConv(r), u, `m${i}`);
      // Delivery does not wait for MySQL; persistence does.
      await waitFor(() => x.received.length === rooms.length * 50, 10_000, "pushed while MySQL is down");
      await waitFor(async () => (await pendingOwners(s, PERSIST_GROUP)).size > 0, 5_000, "persist batches pending");
      for (const r of rooms) expect(await s.redis.zcard(s.keys.pending(roomConv(r)))).toBe(50);
    } finally {
      await s.infra.mysql.start();
    }
    const t0 = performance.now();
    for (const r of rooms) {
      await waitFor(async () => (await s.rows(roomConv(r))).length === 50, 20_000, "persisted after MySQL is back");
      await waitFor(async () => (await s.redis.zcard(s.keys.pending(roomConv(r)))) === 0, 5_000, "pending zset cleaned");
      expect((await s.rows(roomConv(r))).map((row) => row.seq)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    }
    await waitFor(() => s.groupDone(PERSIST_GROUP), 5_000, "persist drained");
    console.log(JSON.stringify({ test: "mysql restart", catchUpMs: Math.round(performance.now() - t0) }));
  });
});
