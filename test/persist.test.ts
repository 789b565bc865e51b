// PersistHandler on its own against the real MariaDB of test/support: the hand-built multi-row
// INSERT IGNORE stores every column as the schema says, is idempotent on id and (conv, seq),
// chunks, drops undecodable entries, wraps driver errors without values, and returns the AckHook
// that trims each conversation's pending zset.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { ChainableCommander } from "ioredis";
import type { Pool } from "mysql2/promise";
import { openDb, poolOf, type DbHandle } from "../src/shared/db/index.ts";
import { redisKeys } from "../src/shared/keys.ts";
import { createLogger, silentLogger } from "../src/shared/log.ts";
import { newRegistry } from "../src/shared/ops.ts";
import { encodeEvent, type StreamEvent } from "../src/shared/stream.ts";
import type { StreamEntry } from "../src/task/consumer.ts";
import { taskMetrics } from "../src/task/metrics.ts";
import { PersistHandler, type PersistOptions } from "../src/task/persist.ts";
import { PersistWriter } from "../src/task/persist-writer.ts";
import { getInfra } from "./support/infra.ts";

let h: DbHandle;
beforeAll(async () => {
  h = openDb((await getInfra()).mysqlUrl);
});
afterAll(() => h?.close());

const keys = redisKeys(`persist-test-${process.pid}:`);
let nextId = (BigInt(Date.now()) << 20n) + 7n;
let convs = 0;
const newConv = () => `room:persist-${process.pid}-${Date.now().toString(36)}-${++convs}`;

function handler(over: Partial<PersistOptions> = {}) {
  const metrics = taskMetrics(newRegistry("task"));
  const handler = new PersistHandler({ pool: poolOf(h.db), keys, metrics, log: silentLogger, stream: keys.stream(0), ...over } as PersistOptions);
  const persisted = async () => (await metrics.rowsPersisted.get()).values[0]?.value ?? 0;
  return { handler, persisted };
}

type M = Extract<StreamEvent, { t: "m" }>;
const msg = (conv: string, over: Partial<M> = {}): M => ({ t: "m", id: String(nextId++), conv, from: { userId: 42, userName: "alice" }, body: "hi", ts: 1_700_000_000_123, ...over });
const entry = (ev: StreamEvent | Uint8Array, n: number): StreamEntry => ({ id: `${n}-0`, d: ev instanceof Uint8Array ? Buffer.from(ev) : encodeEvent(ev), n });

/** The AckHook's commands on a stub transaction. */
function ackCommands(hook: unknown): string[][] {
  const calls: string[][] = [];
  const tx = {
    zremrangebyscore: (...a: unknown[]) => (calls.push(a.map(String)), tx),
    eval: (_lua: string, ...a: unknown[]) => (calls.push(["eval", ...a.map(String)]), tx),
  } as unknown as ChainableCommander;
  (hook as (tx: ChainableCommander) => void)(tx);
  return calls.sort();
}

async function rows(conv: string) {
  const [r] = await h.pool.query("SELECT * FROM messages WHERE conv = ? ORDER BY seq", [conv]);
  return r as Record<string, unknown>[];
}

describe("PersistHandler", () => {
  test("stores every column, counts inserted rows, returns the pending-zset trim per conversation", async () => {
    const { handler: p, persisted } = handler();
    const [a, b] = [newConv(), newConv()];
    const tricky = "quotes ' \" back\\slash \\' NUL \0 newline \n tab \t ^Z \x1a ✓ 😀 ?, ?) -- #";
    const evs = [
      msg(a, { body: tricky, cmid: "cmid-1" }),
      msg(b, { from: { userId: 2 ** 40, userName: "bob" }, body: "" }),
      msg(a, { body: "x".repeat(4000) }),
    ];
    const hook = await p.handle([entry(evs[0], 1), entry(evs[1], 7), entry(evs[2], 2)]);
    expect(await persisted()).toBe(3);
    expect(await rows(a)).toEqual([
      { id: evs[0].id, conv: a, seq: "1", sender_id: "42", sender_name: "alice", body: tricky, ts: "1700000000123", client_msg_id: "cmid-1" },
      { id: evs[2].id, conv: a, seq: "2", sender_id: "42", sender_name: "alice", body: "x".repeat(4000), ts: "1700000000123", client_msg_id: null },
    ]);
    expect(await rows(b)).toEqual([{ id: evs[1].id, conv: b, seq: "7", sender_id: String(2 ** 40), sender_name: "bob", body: "", ts: "1700000000123", client_msg_id: null }]);
    expect(ackCommands(hook)).toEqual([
      [keys.pending(a), "-inf", "2"],
      [keys.pending(b), "-inf", "7"],
    ].sort());
  });

  test("a replay writes nothing twice; another id on a stored (conv, seq) is counted and re-sequenced, not dropped", async () => {
    const { handler: p, persisted } = handler();
    const metrics = (p as unknown as { o: PersistOptions }).o.metrics;
    const conv = newConv();
    const first = [msg(conv, { body: "one" }), msg(conv, { body: "two" })];
    await p.handle(first.map((e, i) => entry(e, i + 1)));
    const before = await rows(conv);
    const replay = await p.handle([entry(first[0], 1), entry(first[1], 2)]);
    expect(ackCommands(replay)).toEqual([[keys.pending(conv), "-inf", "2"]]);
    const newcomer = msg(conv, { body: "other id, same seq", cmid: "c9" });
    const hook = await p.handle([entry(first[0], 1), entry(newcomer, 2), entry(first[1], 2)]);
    expect(await rows(conv)).toEqual(before);
    expect(await persisted()).toBe(2);
    expect((await metrics.seqCollisions.get()).values[0]?.value).toBe(1);
    // The newcomer goes back on the stream after MySQL's highest seq (2), in the ack's MULTI.
    expect(ackCommands(hook)).toEqual([
      [keys.pending(conv), "-inf", "2"],
      ["eval", "0", keys.conv(conv), "2", keys.stream(0), keys.pending(conv), encodeEvent(newcomer).toString(), keys.idem(42, conv, "c9"), newcomer.id, String(newcomer.ts)],
    ].sort());
  });

  test("splits a batch by rows and by estimated bytes; every row lands", async () => {
    const conv = newConv();
    const evs = Array.from({ length: 23 }, (_, i) => msg(conv, { body: `${i}`.padEnd(i % 5 === 0 ? 3000 : 10, "é") }));
    let statements = 0;
    // Message INSERTs only (each batch also upserts its senders' read positions and conversation lists).
    const pool = { query: (sql: string, values: unknown[]) => (sql.startsWith("INSERT IGNORE INTO messages") && statements++, h.pool.query(sql, values)) } as unknown as Pool;
    const byRows = handler({ pool, maxRows: 4 });
    await byRows.handler.handle(evs.slice(0, 11).map((e, i) => entry(e, i + 1)));
    expect(statements).toBe(3); // 4 + 4 + 3
    // A body estimates 3 bytes per char + 200: 230 short, 9,200 long. Entries 12..23 (long: 16, 21)
    // go as 12-15 | 16-19 | 20-23, each under 10,000.
    const byBytes = handler({ pool, maxBytes: 10_000 });
    await byBytes.handler.handle(evs.slice(11).map((e, i) => entry(e, i + 12)));
    expect(statements).toBe(6);
    expect(await byRows.persisted()).toBe(11);
    expect(await byBytes.persisted()).toBe(12);
    const stored = await rows(conv);
    expect(stored.map((r) => [r.seq, r.body])).toEqual(evs.map((e, i) => [String(i + 1), e.body]));
  });

  test("drops undecodable entries, skips other events, stores the rest", async () => {
    const lines: string[] = [];
    const { handler: p, persisted } = handler({ log: createLogger({ level: "warn", write: (l) => lines.push(l) }) });
    const conv = newConv();
    const good = msg(conv, { body: "kept" });
    const hook = await p.handle([
      entry(new Uint8Array([0xc1, 0xff, 0x00]), 1), // not MessagePack
      entry(msg(conv, { id: "12abc", body: "secret 1" }), 1), // id not an integer
      entry({ ...msg(conv, { body: "secret 2" }), from: undefined } as unknown as M, 1), // no sender
      entry({ t: "p", room: "r", event: "join", user: { userId: 1, userName: "u" } }, 3),
      entry({ t: "k", userId: 1, sid: "s" }, 0),
      entry(good, 1),
    ]);
    expect(await persisted()).toBe(1);
    expect((await rows(conv)).map((r) => [r.id, r.body])).toEqual([[good.id, "kept"]]);
    expect(ackCommands(hook)).toEqual([[keys.pending(conv), "-inf", "1"]]);
    expect(lines.length).toBe(3);
    expect(lines.join("\n")).not.toContain("secret");
    // Only presence and kick: nothing to write, nothing to trim.
    expect(await p.handle([entry({ t: "k", userId: 1, sid: "s" }, 0)])).toBeUndefined();
  });

  test("a failing insert throws the driver's code and message, never the values", async () => {
    const db = `bunchat_persist_empty_${process.pid}`;
    await h.pool.query(`CREATE DATABASE IF NOT EXISTS ${db}`);
    const url = new URL((await getInfra()).mysqlUrl);
    url.pathname = `/${db}`;
    const empty = openDb(url.toString());
    try {
      const { handler: p, persisted } = handler({ pool: empty.pool });
      const err = await p.handle([entry(msg(newConv(), { body: "top secret body" }), 1)]).then(
        () => undefined,
        (e: unknown) => e as Error & { code?: string; sql?: string },
      );
      expect(err?.code).toBe("ER_NO_SUCH_TABLE");
      expect(err?.message).toStartWith("message insert failed: ");
      expect(err?.message).toContain("doesn't exist");
      expect(JSON.stringify({ ...err, message: err?.message, stack: err?.stack })).not.toContain("top secret");
      expect(err?.sql).toBeUndefined();
      expect(await persisted()).toBe(0);
    } finally {
      await empty.close();
      await h.pool.query(`DROP DATABASE IF EXISTS ${db}`);
    }
  });
});

describe("PersistHandler read positions (v1.1)", () => {
  test("each batch upserts its senders' highest seq per conversation, never moving a position back", async () => {
    const { handler: p } = handler();
    const conv = newConv();
    const bob = { userId: 43, userName: "bob" };
    const readSeq = async (userId: number) => {
      const [r] = await h.pool.query("SELECT read_seq FROM read_positions WHERE user_id = ? AND conv = ?", [userId, conv]);
      const v = (r as { read_seq: unknown }[])[0]?.read_seq;
      return v === undefined ? undefined : Number(v);
    };
    await p.handle([entry(msg(conv), 1), entry(msg(conv, { from: bob }), 2), entry(msg(conv), 3)]);
    expect([await readSeq(42), await readSeq(43)]).toEqual([3, 2]);
    // A replay of an older batch (or a position already read further) keeps the greatest.
    await h.pool.query("UPDATE read_positions SET read_seq = 9 WHERE user_id = 43 AND conv = ?", [conv]);
    await p.handle([entry(msg(conv, { from: bob }), 2), entry(msg(conv), 4)]);
    expect([await readSeq(42), await readSeq(43)]).toEqual([4, 9]);
  });
});

describe("PersistWriter shared by several partitions' handlers", () => {
  test("batches handed in one turn are written with one statement of each kind; each handler gets its own trims and collisions", async () => {
    const kinds: string[] = [];
    const pool = { query: (sql: string, values: unknown[]) => (kinds.push(sql.split(" (")[0]), h.pool.query(sql, values)) } as unknown as Pool;
    const metrics = taskMetrics(newRegistry("task"));
    const writer = new PersistWriter({ pool, metrics });
    const make = (p: number) => new PersistHandler({ pool, keys, metrics, log: silentLogger, stream: keys.stream(p), writer });
    const [p0, p1] = [make(0), make(1)];
    const [a, b] = [newConv(), newConv()];
    const bob = { userId: 43, userName: "bob" };
    // b already holds seq 1 under another id: the newcomer collides.
    const stored = msg(b, { body: "first" });
    await make(1).handle([entry(stored, 1)]);
    kinds.length = 0;
    const newcomer = msg(b, { body: "other id, same seq", from: bob });
    const [hookA, hookB] = await Promise.all([
      p0.handle([entry(msg(a), 1), entry(msg(a, { from: bob }), 2)]),
      p1.handle([entry(newcomer, 1), entry(msg(b), 2)]),
    ]);
    expect(kinds).toEqual([
      "INSERT IGNORE INTO messages",
      "SELECT id FROM messages WHERE id IN",
      "INSERT INTO read_positions",
      "INSERT IGNORE INTO user_conversations",
      "SELECT conv, MAX(seq) AS s FROM messages WHERE conv IN",
    ]);
    expect((await rows(a)).map((r) => r.seq)).toEqual(["1", "2"]);
    expect((await rows(b)).map((r) => [r.seq, r.body])).toEqual([["1", "first"], ["2", "hi"]]);
    expect(ackCommands(hookA)).toEqual([[keys.pending(a), "-inf", "2"]]);
    expect(ackCommands(hookB)).toEqual([
      [keys.pending(b), "-inf", "2"],
      ["eval", "0", keys.conv(b), "2", keys.stream(1), keys.pending(b), encodeEvent(newcomer).toString(), "", newcomer.id, String(newcomer.ts)],
    ].sort());
    expect((await metrics.rowsPersisted.get()).values[0]?.value).toBe(1 + 3);
    // Later turns write apart.
    await p0.handle([entry(msg(a), 3)]);
    expect(kinds.filter((k) => k === "INSERT IGNORE INTO messages").length).toBe(2);
  });

  test("a failing statement fails every batch of the flush, and their conversation-list rows are written on the retry", async () => {
    let fail = true;
    const sqls: string[] = [];
    const pool = {
      query: (sql: string, values: unknown[]) => {
        sqls.push(sql);
        if (fail && sql.startsWith("INSERT INTO read_positions")) return Promise.reject(Object.assign(new Error("boom"), { code: "ER_LOCK_DEADLOCK" }));
        return h.pool.query(sql, values);
      },
    } as unknown as Pool;
    const metrics = taskMetrics(newRegistry("task"));
    const writer = new PersistWriter({ pool, metrics });
    const [p0, p1] = [0, 1].map((p) => new PersistHandler({ pool, keys, metrics, log: silentLogger, stream: keys.stream(p), writer }));
    const [a, b] = [newConv(), newConv()];
    const batches = [[entry(msg(a), 1)], [entry(msg(b), 1)]];
    const res = await Promise.allSettled([p0.handle(batches[0]), p1.handle(batches[1])]);
    expect(res.map((r) => r.status)).toEqual(["rejected", "rejected"]);
    expect(String((res[0] as PromiseRejectedResult).reason)).toContain("read position upsert failed: boom");
    fail = false;
    sqls.length = 0;
    await Promise.all([p0.handle(batches[0]), p1.handle(batches[1])]);
    expect(sqls.filter((s) => s.startsWith("INSERT IGNORE INTO user_conversations")).length).toBe(1);
    const [uc] = await h.pool.query("SELECT conv FROM user_conversations WHERE user_id = 42 AND conv IN (?, ?) ORDER BY conv", [a, b]);
    expect((uc as { conv: string }[]).map((r) => r.conv)).toEqual([a, b].sort());
  });
});
