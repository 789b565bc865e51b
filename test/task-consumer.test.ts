// StreamConsumer mechanics against a real redis-server: claim, replay, ack-after-success, retry order, prompt stop,
// several streams in one consumer.
import { afterAll, describe, expect, test } from "bun:test";
import { Redis } from "ioredis";
import { silentLogger } from "../src/shared/log.ts";
import { StreamConsumer, type BatchHandler, type StreamEntry } from "../src/task/consumer.ts";
import { HookedAcks } from "../src/task/acks.ts";
import { getInfra } from "./support/infra.ts";
import { waitFor } from "./task-helpers.ts";

const conns: Redis[] = [];
async function redis(): Promise<Redis> {
  const r = new Redis((await getInfra()).redisUrl);
  conns.push(r);
  return r;
}
afterAll(() => {
  for (const c of conns) c.disconnect();
});

/** A consumer of one stream (start() adds it). */
function consumer(r: Redis, blocking: Redis, stream: string, name: string, handler: BatchHandler) {
  const c = new StreamConsumer({ redis: r, blocking, group: "g", consumer: name, log: silentLogger, count: 10 });
  return { start: () => c.add(stream, handler), stop: () => c.stop() };
}

const add = (r: Redis, stream: string, n: number) => r.xadd(stream, "*", "n", String(n), "d", Buffer.from([0xc0, n]));

describe("StreamConsumer", () => {
  test("claims other consumers' pending entries, replays them first, then reads new ones, in order", async () => {
    const r = await redis();
    const stream = `cons:${crypto.randomUUID()}`;
    await r.xgroup("CREATE", stream, "g", "0", "MKSTREAM");
    for (let i = 1; i <= 25; i++) await add(r, stream, i);
    // A dead owner read 15 entries and never acked them.
    await r.xreadgroup("GROUP", "g", "dead", "COUNT", 15, "STREAMS", stream, ">");
    const seen: number[] = [];
    const c = consumer(r, await redis(), stream, "live", async (entries) => {
      seen.push(...entries.map((e: StreamEntry) => e.n));
    });
    c.start();
    await waitFor(() => seen.length === 25, 5_000, "first 25");
    for (let i = 26; i <= 30; i++) await add(r, stream, i);
    await waitFor(() => seen.length === 30, 5_000, "new entries");
    expect(seen).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
    // Acks follow within the ack buffer's delay.
    await waitFor(async () => ((await r.xpending(stream, "g")) as unknown[])[0] === 0, 5_000, "all acked");
    await c.stop();
  });

  test("a failing batch stays pending and is retried with backoff, in order, acked only after success", async () => {
    const r = await redis();
    const stream = `cons:${crypto.randomUUID()}`;
    for (let i = 1; i <= 5; i++) await add(r, stream, i);
    let failures = 2;
    const attempts: { at: number; ns: number[]; pending: number }[] = [];
    const c = consumer(r, await redis(), stream, "c1", async (entries) => {
      const pending = Number(((await r.xpending(stream, "g")) as unknown[])[0]);
      attempts.push({ at: performance.now(), ns: entries.map((e) => e.n), pending });
      if (failures-- > 0) throw new Error("boom");
    });
    c.start();
    await waitFor(() => attempts.length === 3, 5_000, "three attempts");
    await waitFor(async () => ((await r.xpending(stream, "g")) as unknown[])[0] === 0, 5_000, "acked");
    await c.stop();
    for (const a of attempts) expect(a.ns).toEqual([1, 2, 3, 4, 5]);
    for (const a of attempts) expect(a.pending).toBe(5);
    expect(attempts[1].at - attempts[0].at).toBeGreaterThanOrEqual(190);
    expect(attempts[2].at - attempts[1].at).toBeGreaterThanOrEqual(390);
  });

  test("survives its blocking connection being killed mid-read, in order, nothing lost", async () => {
    const r = await redis();
    const stream = `cons:${crypto.randomUUID()}`;
    const blocking = await redis();
    blocking.on("error", () => undefined);
    const blockingId = await blocking.client("ID");
    const seen: number[] = [];
    const c = consumer(r, blocking, stream, "c1", async (entries) => {
      seen.push(...entries.map((e) => e.n));
    });
    c.start();
    for (let i = 1; i <= 5; i++) await add(r, stream, i);
    await waitFor(() => seen.length === 5, 5_000, "first entries");
    await r.client("KILL", "ID", blockingId);
    for (let i = 6; i <= 10; i++) await add(r, stream, i);
    await waitFor(() => seen.length === 10, 5_000, "entries after the kill");
    expect(seen).toEqual(Array.from({ length: 10 }, (_, i) => i + 1));
    await c.stop();
  });

  test("after its blocking connection dropped, it replays its pending list before newer entries", async () => {
    const r = await redis();
    const stream = `cons:${crypto.randomUUID()}`;
    const blocking = await redis();
    blocking.on("error", () => undefined);
    const blockingId = await blocking.client("ID");
    let release!: () => void;
    const gate = new Promise<void>((res) => (release = res));
    const seen: number[] = [];
    const c = consumer(r, blocking, stream, "c1", async (entries) => {
      if (entries.some((e) => e.n === 5)) await gate;
      seen.push(...entries.map((e) => e.n));
    });
    c.start();
    for (let i = 1; i <= 5; i++) await add(r, stream, i);
    await waitFor(async () => Number(((await r.xpending(stream, "g")) as unknown[])[0]) > 0, 5_000, "batch in flight");
    // A read whose reply was lost with the connection: 6..8 delivered to c1, never seen by it.
    for (let i = 6; i <= 8; i++) await add(r, stream, i);
    await r.xreadgroup("GROUP", "g", "c1", "STREAMS", stream, ">");
    const closed = new Promise((res) => blocking.once("close", res));
    await r.client("KILL", "ID", blockingId);
    await closed;
    for (let i = 9; i <= 10; i++) await add(r, stream, i);
    release();
    await waitFor(() => seen.length >= 10, 5_000, "all entries");
    expect(seen).toEqual(Array.from({ length: 10 }, (_, i) => i + 1));
    await c.stop();
  });

  test("stop() returns promptly while blocked on a read", async () => {
    const r = await redis();
    const stream = `cons:${crypto.randomUUID()}`;
    let batches = 0;
    const c = consumer(r, await redis(), stream, "c1", async () => {
      batches++;
    });
    c.start();
    await waitFor(async () => (await r.exists(stream)) === 1, 5_000, "group created");
    await Bun.sleep(50); // let it enter the blocking read
    const t0 = performance.now();
    await c.stop();
    expect(performance.now() - t0).toBeLessThan(300);
    expect(batches).toBe(0);
  });

  test("acks of handled batches are all on Redis when stop() returns, so a next owner replays none of them", async () => {
    const r = await redis();
    const stream = `cons:${crypto.randomUUID()}`;
    for (let i = 1; i <= 30; i++) await add(r, stream, i);
    const seen: number[] = [];
    const { promise: allSeen, resolve } = Promise.withResolvers<void>();
    const c = consumer(r, await redis(), stream, "c1", async (entries) => {
      seen.push(...entries.map((e) => e.n));
      if (seen.length === 30) resolve();
    });
    c.start();
    await allSeen;
    // Stopping at once, well within the ack buffer's delay.
    await c.stop();
    expect(((await r.xpending(stream, "g")) as unknown[])[0]).toBe(0);
  });

  test("one consumer reads several streams, each in order; a failing one backs off alone; a removed one is no longer read", async () => {
    const r = await redis();
    const streams = [0, 1, 2].map(() => `cons:${crypto.randomUUID()}`);
    const c = new StreamConsumer({ redis: r, blocking: await redis(), group: "g", consumer: "c1", log: silentLogger, count: 10 });
    const seen = streams.map(() => [] as number[]);
    let failures = 3;
    streams.forEach((s, i) =>
      c.add(s, async (entries) => {
        if (i === 2 && failures-- > 0) throw new Error("boom");
        seen[i].push(...entries.map((e) => e.n));
      }),
    );
    for (let n = 1; n <= 25; n++) for (const s of streams) await add(r, s, n);
    await waitFor(() => seen[0].length === 25 && seen[1].length === 25, 5_000, "healthy streams");
    // Streams 0 and 1 went on while stream 2 was backing off (200 + 400 + 800 ms).
    expect(seen[2].length).toBe(0);
    await waitFor(() => seen[2].length === 25, 5_000, "the failing stream, after its backoff");
    for (const s of seen) expect(s).toEqual(Array.from({ length: 25 }, (_, i) => i + 1));

    await c.remove(streams[1]);
    for (const s of streams) await add(r, s, 26);
    await waitFor(() => seen[0].length === 26 && seen[2].length === 26, 5_000, "streams still owned");
    await Bun.sleep(300);
    expect(seen[1].length).toBe(25);
    // The removed stream's new entry was never delivered to this consumer: nothing pending there.
    expect(((await r.xpending(streams[1], "g")) as unknown[])[0]).toBe(0);
    await c.stop();
  });

  test("a slow batch of one stream does not hold up the others; its stream goes on in order afterwards", async () => {
    const r = await redis();
    const [slow, fast] = [0, 1].map(() => `cons:${crypto.randomUUID()}`);
    const c = new StreamConsumer({ redis: r, blocking: await redis(), group: "g", consumer: "c1", log: silentLogger, count: 10 });
    const { promise: gate, resolve: open } = Promise.withResolvers<void>();
    const seen = { slow: [] as number[], fast: [] as number[] };
    c.add(slow, async (entries) => {
      if (entries.some((e) => e.n === 1)) await gate;
      seen.slow.push(...entries.map((e) => e.n));
    });
    c.add(fast, async (entries) => {
      seen.fast.push(...entries.map((e) => e.n));
    });
    await add(r, slow, 1);
    await waitFor(async () => Number(((await r.xpending(slow, "g")) as unknown[])[0]) === 1, 5_000, "slow batch in flight");
    for (let n = 1; n <= 5; n++) {
      await add(r, fast, n);
      await add(r, slow, n + 1);
      await waitFor(() => seen.fast.length === n, 5_000, `fast entry ${n} while the slow batch hangs`);
    }
    expect(seen.slow).toEqual([]);
    open();
    await waitFor(() => seen.slow.length === 6, 5_000, "the slow stream catches up");
    expect(seen.slow).toEqual([1, 2, 3, 4, 5, 6]);
    expect(seen.fast).toEqual([1, 2, 3, 4, 5]);
    await c.stop();
  });
});

describe("HookedAcks", () => {
  test("acks handed in one turn share one MULTI; a batch whose own command fails is rejected alone, the others are acked", async () => {
    const r = await redis();
    const [s1, s2, s3] = [1, 2, 3].map(() => `hooked:${crypto.randomUUID()}`);
    const ids: Record<string, string[]> = {};
    for (const s of [s1, s2, s3]) {
      await r.xgroup("CREATE", s, "g", "0", "MKSTREAM");
      ids[s] = [String(await add(r, s, 1)), String(await add(r, s, 2))];
      await r.xreadgroup("GROUP", "g", "c", "COUNT", 10, "STREAMS", s, ">");
    }
    const wrongType = `hooked:${crypto.randomUUID()}`;
    await r.set(wrongType, "a string");
    let multis = 0;
    const multi = r.multi.bind(r);
    const counting = Object.assign(Object.create(r), { multi: (...a: Parameters<Redis["multi"]>) => (multis++, multi(...a)) }) as Redis;
    const acks = new HookedAcks(counting);
    const marker = `hooked:${crypto.randomUUID()}`;
    const results = await Promise.allSettled([
      acks.add(s1, "g", ids[s1], (tx) => void tx.set(marker, "1")),
      acks.add(s2, "g", ids[s2], (tx) => void tx.zadd(wrongType, 1, "x")), // WRONGTYPE inside the MULTI
      acks.add(s3, "g", ids[s3], () => {}),
    ]);
    expect(multis).toBe(1);
    expect(results.map((x) => x.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
    expect(String((results[1] as PromiseRejectedResult).reason)).toContain("WRONGTYPE");
    expect(await r.get(marker)).toBe("1");
    const pending = async (s: string) => Number(((await r.xpending(s, "g")) as unknown[])[0]);
    expect([await pending(s1), await pending(s3)]).toEqual([0, 0]);
    // A later turn is a transaction of its own.
    await acks.add(s1, "g", ids[s1], () => {});
    expect(multis).toBe(2);
  });

  test("a consumer over several streams acks their hooked batches of one round in one transaction", async () => {
    const r = await redis();
    const streams = [1, 2, 3, 4].map(() => `hooked:${crypto.randomUUID()}`);
    for (const s of streams) for (let i = 1; i <= 3; i++) await add(r, s, i);
    let multis = 0;
    const multi = r.multi.bind(r);
    const counting = Object.assign(Object.create(r), { multi: (...a: Parameters<Redis["multi"]>) => (multis++, multi(...a)) }) as Redis;
    const c = new StreamConsumer({ redis: counting, blocking: await redis(), group: "g", consumer: "c1", log: silentLogger, count: 10 });
    let handled = 0;
    for (const s of streams)
      c.add(s, async (entries) => {
        handled += entries.length;
        return (tx) => void tx.zremrangebyscore(`${s}:z`, "-inf", 3);
      });
    await waitFor(async () => {
      for (const s of streams) if (Number(((await r.xpending(s, "g")) as unknown[])[0]) !== 0) return false;
      return handled === 12;
    }, 5_000, "all acked");
    await c.stop();
    // Setup may take the streams over in more than one round; never one transaction per stream.
    expect(multis).toBeGreaterThanOrEqual(1);
    expect(multis).toBeLessThan(streams.length);
  });
});

describe("StreamConsumer intervalMs", () => {
  test("under a steady flow, reads at most every intervalMs, every entry in order", async () => {
    const r = await redis();
    const stream = `cons:${crypto.randomUUID()}`;
    const rounds: number[][] = [];
    const c = new StreamConsumer({ redis: r, blocking: await redis(), group: "g", consumer: "c1", log: silentLogger, intervalMs: 300 });
    c.add(stream, async (entries) => void rounds.push(entries.map((e) => e.n)));
    await waitFor(async () => (await r.exists(stream)) === 1, 5_000, "group created");
    const t0 = performance.now();
    let n = 0;
    // One entry every ~5 ms for 1.2 s: without the interval, about a read per entry.
    while (performance.now() - t0 < 1200) {
      await add(r, stream, ++n);
      await Bun.sleep(5);
    }
    const ms = performance.now() - t0;
    await waitFor(() => rounds.flat().length === n, 5_000, "all handled");
    await c.stop();
    expect(rounds.flat()).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    // Reads while entries flowed: at most one per 300 ms, plus the first and the last.
    expect(rounds.length).toBeLessThanOrEqual(Math.ceil(ms / 300) + 2);
    expect(n).toBeGreaterThan(rounds.length * 5);
  });
});
