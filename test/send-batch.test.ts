// Logic's send path against a real Redis, without gRPC: one script call per batch (chunked)
// must behave as if the messages were sent one after another: duplicates inside a batch, the
// rate limit inside a batch, send order across chunks, byte-exact events, and failures.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Redis } from "ioredis";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Config } from "../src/shared/config.ts";
import { openDb, type DbHandle } from "../src/shared/db/index.ts";
import { ownSeqField, partitionOf, redisKeys, type Keys } from "../src/shared/keys.ts";
import { dmConv, roomConv, LIMITS } from "../src/shared/protocol.ts";
import { encodeEvent, entryFields, parseEvent, type StreamEvent } from "../src/shared/stream.ts";
import type { Accounts } from "../src/logic/accounts.ts";
import { Messages } from "../src/logic/messages.ts";
import { defineScripts, SCRIPT_CLIENT, SendBatchWriter, type Scripts } from "../src/logic/scripts.ts";
import { Snowflake } from "../src/logic/snowflake.ts";
import type { SendAck, SendReq } from "../proto/logic.ts";
import type { Result } from "../src/shared/batcher.ts";
import { freePort, getInfra } from "./support/infra.ts";
import { redisPing } from "../src/infra/redis.ts";

const PARTITIONS = 4;
let redis: Redis & Scripts;
let redisUrl: string;
let dbh: DbHandle;
let scopes = 0;
const snowflake = new Snowflake(7);

beforeAll(async () => {
  const infra = await getInfra();
  redisUrl = infra.redisUrl;
  redis = defineScripts(new Redis(infra.redisUrl, { enableAutoPipelining: true, maxRetriesPerRequest: 2 }));
  dbh = openDb(infra.mysqlUrl, 2);
});
afterAll(async () => {
  redis?.disconnect();
  await dbh?.close();
});

/** A Messages on its own key prefix; users 1..99 exist. */
function scope(rate = { perSec: 1000, burst: 1000 }, client?: Redis & Scripts) {
  const prefix = `sb${process.pid}x${++scopes}x${Date.now().toString(36)}:`;
  const keys = redisKeys(prefix);
  const config = { redisPrefix: prefix, streamPartitions: PARTITIONS, rateLimitPerSec: rate.perSec, rateLimitBurst: rate.burst, sendTimeoutMs: 5000, ackMode: "memory" } as Config;
  const accounts = { names: async (ids: number[]) => new Map(ids.filter((id) => id < 100).map((id) => [id, `user${id}`])) } as unknown as Accounts;
  const messages = new Messages({ db: dbh.db, redis: client ?? redis, keys, config, accounts, ids: () => snowflake });
  return { keys, messages };
}

const user = (id: number) => ({ userId: id, userName: `user${id}` });
const inRoom = (from: number, room: string, body: string, more: Partial<SendReq> = {}): SendReq => ({ from: user(from), room, body, ...more });

function ok(r: Result<SendAck>): SendAck {
  if (!r.ok) throw new Error(`expected an acceptance, got ${JSON.stringify(r.err)}`);
  return r.ok;
}

/** The conversation's stream entries, in stream order: n and the raw d bytes. */
async function streamOf(keys: Keys, conv: string): Promise<{ n: number; d: Buffer; ev: StreamEvent }[]> {
  const entries = await redis.xrangeBuffer(keys.stream(partitionOf(conv, PARTITIONS)), "-", "+");
  return entries
    .map(([, fields]) => entryFields(fields))
    .map(({ d, n }) => ({ n, d: d as Buffer, ev: parseEvent(d as Buffer) }))
    .filter((e) => e.ev.t === "m" && e.ev.conv === conv);
}

describe("send batches", () => {
  test("duplicates inside one batch get the first acceptance and use no seq", async () => {
    const { keys, messages } = scope();
    const room = roomConv("dup");
    const res = await messages.send([
      inRoom(1, "dup", "one", { clientMsgId: "a" }),
      inRoom(1, "dup", "two", { clientMsgId: "b" }),
      inRoom(1, "dup", "one again", { clientMsgId: "a" }),
      inRoom(1, "dup", "three", { retryKey: "conn:1" }),
      inRoom(1, "dup", "three (transport retry)", { retryKey: "conn:1" }),
      inRoom(2, "dup", "same id, other sender", { clientMsgId: "a" }),
      { from: user(1), toUserId: 2, body: "same id, other conversation", clientMsgId: "a" },
      inRoom(1, "dup", "four"),
    ]);
    const acks = res.map(ok);
    expect(acks.map((a) => [a.conv, a.seq])).toEqual([
      [room, 1],
      [room, 2],
      [room, 1],
      [room, 3],
      [room, 3],
      [room, 4],
      [dmConv(1, 2), 1],
      [room, 5],
    ]);
    expect(acks[2]).toEqual(acks[0]);
    expect(acks[4]).toEqual(acks[3]);
    expect(new Set(acks.map((a) => a.id)).size).toBe(6);

    const entries = await streamOf(keys, room);
    expect(entries.map((e) => e.n)).toEqual([1, 2, 3, 4, 5]);
    expect(entries.map((e) => (e.ev as { body: string }).body)).toEqual(["one", "two", "three", "same id, other sender", "four"]);
    expect(await redis.zcard(keys.pending(room))).toBe(5);

    // A later batch still gets the first acceptance.
    const later = await messages.send([inRoom(1, "dup", "one, much later", { clientMsgId: "a" })]);
    expect(ok(later[0])).toEqual(acks[0]);
    expect(await redis.zcard(keys.pending(room))).toBe(5);
  });

  test("the rate limit applies message by message inside a batch; a duplicate is answered before it", async () => {
    const { keys, messages } = scope({ perSec: 1, burst: 3 });
    const res = await messages.send([
      inRoom(1, "rl", "1", { clientMsgId: "first" }),
      inRoom(1, "rl", "2"),
      inRoom(2, "rl", "other user"),
      inRoom(1, "rl", "3"),
      inRoom(1, "rl", "4"),
      inRoom(1, "rl", "5", { clientMsgId: "late" }),
      inRoom(1, "rl", "1 again", { clientMsgId: "first" }),
    ]);
    expect(res.map((r) => r.err?.code ?? r.ok?.seq)).toEqual([1, 2, 3, 4, "RATE_LIMITED", "RATE_LIMITED", 1]);
    expect(res[4].err?.message).toBe("sending too fast");
    expect(ok(res[6])).toEqual(ok(res[0]));
    // A rate-limited message records nothing: its clientMsgId is free for the retry.
    expect(await redis.exists(keys.idem(1, roomConv("rl"), "late"))).toBe(0);
    expect((await streamOf(keys, roomConv("rl"))).map((e) => e.n)).toEqual([1, 2, 3, 4]);
  });

  test("a conversation is in the lists of both parties of a direct message and of a room's senders", async () => {
    const { keys, messages } = scope();
    const dm = (from: number, to: number, body: string): SendReq => ({ from: user(from), toUserId: to, body });
    const room = `lists${scopes}`;
    const res = await messages.send([dm(11, 12, "hi"), dm(11, 12, "again"), dm(12, 11, "back"), inRoom(13, room, "r1"), inRoom(13, room, "r2"), inRoom(14, room, "r3")]);
    res.forEach(ok);
    expect(await redis.smembers(keys.userConvs(11))).toEqual([dmConv(11, 12)]);
    expect(await redis.smembers(keys.userConvs(12))).toEqual([dmConv(11, 12)]);
    expect(await redis.smembers(keys.userConvs(13))).toEqual([roomConv(room)]);
    expect(await redis.smembers(keys.userConvs(14))).toEqual([roomConv(room)]);
  });

  test("the token bucket refills at the rate and expires once it would be full again", async () => {
    // 1 token a second: only a stall of most of a second between two sends could blur the result.
    const { keys, messages } = scope({ perSec: 1, burst: 2 });
    const send = async (body: string) => (await messages.send([inRoom(3, "refill", body)]))[0];
    expect(ok(await send("1")).seq).toBe(1);
    expect(ok(await send("2")).seq).toBe(2);
    expect((await send("3")).err?.code).toBe("RATE_LIMITED");
    // The bucket lives until it would be full again (burst / rate = 2 s) plus a second.
    const ttl = await redis.pttl(keys.rate(3));
    expect(ttl).toBeGreaterThan(2000);
    expect(ttl).toBeLessThanOrEqual(3000);
    await Bun.sleep(1100); // the refill under test: 1.1 tokens back
    expect(ok(await send("4")).seq).toBe(3);
    expect((await send("5")).err?.code).toBe("RATE_LIMITED");
  });

  test("a batch leaves the state its messages leave sent one by one", async () => {
    // One call with senders and conversations repeating, against the same messages sent one call
    // each: counters, own-send fields, pending sets, lists and token buckets end up the same.
    const items = (tag: string) =>
      Array.from({ length: 30 }, (_, i): SendReq => (i % 5 === 4 ? { from: user(21 + (i % 3)), toUserId: 30, body: `${tag}${i}` } : inRoom(21 + (i % 3), `st${tag}${i % 2}`, `${tag}${i}`)));
    const state = async (keys: Keys, tag: string) => {
      const convs = [roomConv(`st${tag}0`), roomConv(`st${tag}1`), ...[21, 22, 23].map((u) => dmConv(u, 30))];
      const out: unknown[] = [];
      for (const c of convs) {
        const h = await redis.hgetall(keys.conv(c));
        delete h.ts;
        delete h.ep;
        out.push(h, await redis.zrange(keys.pending(c), "0", "-1", "WITHSCORES").then((z) => z.filter((_, i) => i % 2).map(Number)));
      }
      for (const u of [21, 22, 23, 30]) out.push((await redis.smembers(keys.userConvs(u))).map((c) => c.replace(tag, "")).sort());
      for (const u of [21, 22, 23]) out.push(Math.round(Number((await redis.get(keys.rate(u)))?.split(" ")[1])));
      return out;
    };
    const together = scope({ perSec: 1, burst: 8 });
    const acks = await together.messages.send(items("a"));
    const apart = scope({ perSec: 1, burst: 8 });
    const one: Result<SendAck>[] = [];
    for (const it of items("b")) one.push((await apart.messages.send([it]))[0]);
    expect(acks.map((r) => r.err?.code ?? r.ok?.seq)).toEqual(one.map((r) => r.err?.code ?? r.ok?.seq));
    expect(acks.filter((r) => r.err?.code === "RATE_LIMITED").length).toBe(30 - 24);
    expect(await state(together.keys, "a")).toEqual(await state(apart.keys, "b"));
  });

  test("a message whose append fails uses no seq and no token", async () => {
    const { keys, messages } = scope({ perSec: 1, burst: 3 });
    const conv = roomConv("nostream");
    const stream = keys.stream(partitionOf(conv, PARTITIONS));
    await redis.set(stream, "not a stream");
    const res = await messages.send([inRoom(4, "nostream", "a"), inRoom(4, "nostream", "b")]);
    expect(res.map((r) => r.err?.code)).toEqual(["UNAVAILABLE", "UNAVAILABLE"]);
    expect(await redis.exists(keys.conv(conv), keys.pending(conv), keys.userConvs(4))).toBe(1); // the counter's ep only
    await redis.del(stream);
    const again = await messages.send([inRoom(4, "nostream", "1"), inRoom(4, "nostream", "2"), inRoom(4, "nostream", "3"), inRoom(4, "nostream", "4")]);
    expect(again.map((r) => r.err?.code ?? r.ok?.seq)).toEqual([1, 2, 3, "RATE_LIMITED"]);
  });

  test("a batch larger than one script call keeps send order across the calls", async () => {
    const { keys, messages } = scope();
    const items = Array.from({ length: 700 }, (_, i) => inRoom(1 + (i % 50), `big${i % 3}`, `m${i}`, { retryKey: `r${i}` }));
    const acks = (await messages.send(items)).map(ok);
    for (let room = 0; room < 3; room++) {
      const conv = roomConv(`big${room}`);
      const mine = acks.filter((a) => a.conv === conv);
      expect(mine.map((a) => a.seq)).toEqual(mine.map((_, i) => i + 1));
      const entries = await streamOf(keys, conv);
      expect(entries.map((e) => e.n)).toEqual(mine.map((a) => a.seq));
      expect(entries.map((e) => (e.ev as { id: string }).id)).toEqual(mine.map((a) => a.id));
    }
    expect(Number(await redis.hget(keys.conv(roomConv("big0")), "seq"))).toBe(234);
  });

  test("events reach the stream and the pending set byte-identical to encodeEvent", async () => {
    const { keys, messages } = scope();
    const bodies = ["plain", "héllo wörld ✓", "😀".repeat(LIMITS.maxBodyCodePoints), "x".repeat(LIMITS.maxBodyCodePoints), "\u0000\u007f\u0080\uffff"];
    const items = bodies.map((body, i) => inRoom(3, "bytes", body, { clientMsgId: `ключ-${i}-🔑` }));
    const acks = (await messages.send(items)).map(ok);
    const entries = await streamOf(keys, roomConv("bytes"));
    const pending = await redis.zrangebyscoreBuffer(keys.pending(roomConv("bytes")), 1, 100);
    acks.forEach((a, i) => {
      const want = encodeEvent({ t: "m", id: a.id, conv: a.conv, from: user(3), body: bodies[i], ts: a.ts, cmid: items[i].clientMsgId });
      expect(entries[i].d.equals(want)).toBe(true);
      expect(pending[i].equals(want)).toBe(true);
    });
    // The non-ASCII clientMsgId made the same idem key as before.
    expect(await redis.get(keys.idem(3, roomConv("bytes"), "ключ-0-🔑"))).toBe(`${acks[0].id}|1|${acks[0].ts}`);
  });

  test("the batch argument round-trips through Redis's cmsgpack byte for byte", async () => {
    const strs = ["", "a", "k".repeat(31), "k".repeat(32), "k".repeat(255), "k".repeat(256), "é".repeat(10), "é".repeat(200), "✓".repeat(30000), "k".repeat(70000)];
    const blobs = [0, 1, 31, 32, 255, 256, 65535, 65536, 70000].map((n) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 131 + n) & 255)));
    const w = new SendBatchWriter();
    w.begin("1735689600123", 2.5, 7, 1735689605123);
    for (let i = 0; i < Math.max(strs.length, blobs.length); i++) {
      const s = strs[i % strs.length];
      w.add(s, s, s, s, s, s, s, s, s, s, blobs[i % blobs.length], s);
    }
    const blob = w.finish();
    // A client without auto-pipelining: ioredis 6 drops callBuffer's command name when it auto-pipelines.
    const plain = new Redis((await getInfra()).redisUrl);
    const echoed = (await plain.callBuffer("EVAL", "local a = cmsgpack.unpack(ARGV[1]) return a", 0, blob)) as Buffer[];
    plain.disconnect();
    const want: Buffer[] = ["1735689600123", "2.5", "7", "1735689605123"].map((s) => Buffer.from(s));
    for (let i = 0; i < Math.max(strs.length, blobs.length); i++) {
      for (let f = 0; f < 10; f++) want.push(Buffer.from(strs[i % strs.length]));
      want.push(blobs[i % blobs.length]);
      want.push(Buffer.from(strs[i % strs.length]));
    }
    expect(echoed.length).toBe(want.length);
    want.forEach((b, i) => expect(echoed[i].equals(b)).toBe(true));
  });

  test("a message whose command fails is UNAVAILABLE alone; a failed call makes its chunk UNAVAILABLE", async () => {
    const { keys, messages } = scope();
    await redis.set(keys.conv(roomConv("broken")), "not a hash");
    const res = await messages.send([inRoom(1, "fine", "a"), inRoom(1, "broken", "b"), inRoom(1, "fine", "c"), inRoom(1, "nope", "d", { toUserId: undefined, room: "bad room" })]);
    expect(res.map((r) => r.err?.code ?? r.ok?.seq)).toEqual([1, "UNAVAILABLE", 2, "BAD_REQUEST"]);

    const closed = defineScripts(new Redis(redis.options.port ?? 6379, { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false }));
    const down = scope(undefined, closed);
    const res2 = await down.messages.send([inRoom(1, "fine", "x"), { from: user(1), toUserId: 500, body: "to nobody" }]);
    expect(res2.map((r) => r.err?.code)).toEqual(["UNAVAILABLE", "NOT_FOUND"]);
    closed.disconnect();
  });

  test("a call Redis would run after its deadline stores nothing and is UNAVAILABLE", async () => {
    const { keys, messages } = scope();
    const res = await messages.send([inRoom(1, "late", "a"), inRoom(1, "late", "b")], Date.now() + 400);
    expect(res.map((r) => r.err?.code)).toEqual(["UNAVAILABLE", "UNAVAILABLE"]);
    // The script itself refuses: a blob whose deadline passed (by Redis's clock) writes nothing.
    const w = new SendBatchWriter();
    w.begin(String(Date.now()), 1000, 1000, Date.now() - 1);
    const conv = roomConv("late");
    w.add(keys.rate(1), "", "60", keys.conv(conv), keys.stream(0), keys.pending(conv), keys.userConvs(1), keys.userConvs(1), conv, "1", encodeEvent({ t: "m", id: "1", conv, from: user(1), body: "x", ts: 1 }), ownSeqField(1));
    await expect(redis.imSendBatch(w.finish())).rejects.toThrow(/LATE/);
    expect(await redis.exists(keys.conv(conv), keys.pending(conv), keys.userConvs(1))).toBe(0);
  });

  test("logic's client writes the send script at once, not on a later turn of a busy event loop", async () => {
    // A batch is one command already; an auto-pipeline would hold it until setImmediate, i.e.
    // until whatever else the process is doing has run (here: a 300 ms synchronous stretch).
    const { keys } = scope();
    const client = defineScripts(new Redis(redisUrl, { ...SCRIPT_CLIENT, maxRetriesPerRequest: 2 }));
    try {
      const conv = roomConv(`atonce${scopes}`);
      await client.imSeedConvs(keys.conv(conv), 0, "");
      const w = new SendBatchWriter();
      w.begin(String(Date.now()), 1000, 1000, 0);
      w.add(keys.rate(5), "", "60", keys.conv(conv), keys.stream(partitionOf(conv, PARTITIONS)), keys.pending(conv), keys.userConvs(5), keys.userConvs(5), conv, "1", encodeEvent({ t: "m", id: "1", conv, from: user(5), body: "x", ts: 1 }), ownSeqField(5));
      const reply = client.imSendBatch(w.finish());
      const busyUntil = Date.now() + 300;
      while (Date.now() < busyUntil); // the event loop is busy
      expect(await reply).toMatch(/^1\|1\|/);
      const [[entryId]] = await redis.xrange(keys.stream(partitionOf(conv, PARTITIONS)), "-", "+"); // this scope's own stream
      // The stream entry's id is Redis's clock when it ran the script: before the stretch ended.
      expect(Number(entryId.split("-")[0])).toBeLessThan(busyUntil - 100);
    } finally {
      client.disconnect();
    }
  });

  test("a conversation Redis lost is seeded from MySQL's highest seq before its next message", async () => {
    const { keys, messages } = scope();
    const room = `seed${Date.now().toString(36)}${scopes}`;
    const conv = roomConv(room);
    await dbh.pool.query("INSERT INTO messages (id, conv, seq, sender_id, sender_name, body, ts) VALUES (?, ?, 41, 1, 'user1', 'old', 1000), (?, ?, 42, 1, 'user1', 'old', 2000)", [
      snowflake.next(Date.now()),
      conv,
      snowflake.next(Date.now()),
      conv,
    ]);
    const [a, b] = (await messages.send([inRoom(1, room, "new"), inRoom(1, room, "newer")])).map(ok);
    expect([a.seq, b.seq]).toEqual([43, 44]);
    // Marked for this Redis process in its role: the next send needs no MySQL (ep = run_id:replid).
    const runId = /run_id:(\w+)/.exec(await redis.info("server"))![1];
    const replid = /master_replid:(\w+)/.exec(await redis.info("replication"))![1];
    expect(await redis.hget(keys.conv(conv), "ep")).toBe(`${runId}:${replid}`);
    // As after a restore from an older file: the counter is back at 10 and was marked by an
    // earlier server process. MySQL holds 42 (43 and 44 were never persisted: lost with Redis).
    await redis.hset(keys.conv(conv), "ep", "an-older-server", "seq", 10);
    expect(ok((await messages.send([inRoom(1, room, "after loss")]))[0]).seq).toBe(43);
  });

  test("a primary demoted and promoted again (same process, same run_id) checks its counters again", async () => {
    // Two fresh servers, A and B, so their roles can change.
    const ports = [await freePort(), await freePort()];
    // A replica's full sync goes through an RDB file: each server writes its own into a temp dir.
    const dirs = ports.map(() => mkdtempSync(join(tmpdir(), "send-flip-")));
    const procs = ports.map((port, i) =>
      Bun.spawn(["redis-server", "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dirs[i], "--logfile", ""], {
        stdout: "ignore",
        stderr: "ignore",
      }),
    );
    const admin = ports.map((port) => new Redis(port, "127.0.0.1", { lazyConnect: true }));
    const a = defineScripts(new Redis(ports[0], "127.0.0.1", { maxRetriesPerRequest: 2, lazyConnect: true }));
    const synced = async (r: Redis) => {
      for (const until = Date.now() + 30_000; Date.now() < until; await Bun.sleep(50))
        if (/master_link_status:up/.test(await r.info("replication"))) return;
      throw new Error("replica did not sync");
    };
    try {
      for (const port of ports) for (const until = Date.now() + 10_000; !(await redisPing(port)); await Bun.sleep(50)) if (Date.now() > until) throw new Error("redis-server did not start");
      await Promise.all([...admin, a].map((r) => r.connect()));
      const { messages } = scope(undefined, a);
      const room = `flip${Date.now().toString(36)}${scopes}`;
      const conv = roomConv(room);
      const row = (seq: number) => [snowflake.next(Date.now()), conv, seq, 1, "user1", "old", 1000 + seq];
      await dbh.pool.query("INSERT INTO messages (id, conv, seq, sender_id, sender_name, body, ts) VALUES (?, ?, ?, ?, ?, ?, ?)", row(42));
      expect(ok((await messages.send([inRoom(1, room, "on A")]))[0]).seq).toBe(43);
      // B replicates A, then A accepts 44 and 45, which task persists but B never gets.
      await admin[1].replicaof("127.0.0.1", ports[0]);
      await synced(admin[1]);
      await admin[1].replicaof("NO", "ONE");
      await dbh.pool.query("INSERT INTO messages (id, conv, seq, sender_id, sender_name, body, ts) VALUES (?, ?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?, ?)", [...row(44), ...row(45)]);
      // Failover to B, A rejoins as its replica (taking B's data: seq 43, ep naming A), then back to A.
      await admin[0].replicaof("127.0.0.1", ports[1]);
      await synced(admin[0]);
      await admin[0].replicaof("NO", "ONE");
      // Same process (its run_id unchanged), new role: 44 and 45 are MySQL's, the next is 46.
      expect(ok((await messages.send([inRoom(1, room, "on A again")]))[0]).seq).toBe(46);
    } finally {
      a.disconnect();
      for (const r of admin) r.disconnect();
      for (const p of procs) p.kill();
      await Promise.all(procs.map((p) => p.exited));
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    }
  });
});
