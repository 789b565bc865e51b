// The persist group: writes the message events of a batch to MySQL with multi-row INSERT IGNORE,
// idempotent on id and (conv, seq), so a replayed batch writes nothing twice. Only after the rows
// are committed does the consumer XACK the batch and drop those messages from each conversation's
// pending zset (history reads them from there until now). MySQL down: the handler throws, nothing
// is acked, and the consumer retries with backoff until it returns. Other events are just acked.
// (v1.1) With the messages, each sender's own-send read position (the batch's highest seq per
// sender and conversation) is upserted into read_positions, never moving one back (GREATEST): a
// sender's own send moves their readSeq, and this makes that durable (see src/logic/read.ts).
// It also writes conversation lists behind Redis (user_conversations, migration 003): the sender
// and, in a direct conversation, both users of every message, and the user of every room join
// (presence event), one INSERT IGNORE per batch.
// A message whose (conv, seq) MySQL already holds under another id (Redis lost its tail and handed
// the seq out again, e.g. after a failover, before logic's seq fence could catch it) is not
// dropped: it is counted (bunchat_task_seq_collisions_total), logged, and given the next seq
// after MySQL's highest in that conversation, in the same MULTI as the batch's XACK (RESEQ): a
// new stream entry, so it is stored and delivered again under its new seq with the same id.
//
// This is the hot path of a task process, so the statement is built by hand on the mysql2 pool
// (no query builder): one cached SQL string per row count, one flat parameter array filled
// straight from the unpacked stream events, sent with pool.query (text protocol, escaped by
// mysql2). pool.execute was no cheaper for full batches and clearly dearer for the varying sizes
// of lingered batches (a PREPARE per new size and connection, bench/persist.ts --batches 1-500),
// and its statements would pile up on the server (maxRows per connection).
import type { Pool, ResultSetHeader } from "mysql2/promise";
import { mysqlCode } from "../shared/db/index.ts";
import type { Keys } from "../shared/keys.ts";
import type { Logger } from "../shared/log.ts";
import { parseEvent, type StreamEvent } from "../shared/stream.ts";
import type { AckHook, StreamEntry } from "./consumer.ts";
import type { TaskMetrics } from "./metrics.ts";

export interface PersistOptions {
  /** The mysql2 pool of openDb (see poolOf for a drizzle Db). */
  pool: Pool;
  keys: Keys;
  metrics: TaskMetrics;
  log: Logger;
  /** This handler's stream: where a re-sequenced message is appended. */
  stream: string;
  /** Upper bound of one INSERT statement, in rows and in (estimated) bytes of body. */
  maxRows?: number;
  maxBytes?: number;
}

// Column order of the placeholders; see migrations/001_init.sql and src/shared/db/schema.ts.
const COLUMNS = ["id", "conv", "seq", "sender_id", "sender_name", "body", "ts", "client_msg_id"];
const PER_ROW = COLUMNS.length;
const HEAD = `INSERT IGNORE INTO messages (${COLUMNS.join(", ")}) VALUES `;
const ROW = `(${Array(PER_ROW).fill("?").join(",")})`;
/** Statement by row count: at most maxRows strings, ~2.3 MB if every count from 1 to 500 occurs. */
const statements: string[] = [];
const insertSql = (rows: number): string => (statements[rows] ??= HEAD + Array(rows).fill(ROW).join(","));
/** migrations/002_read_positions.sql: (user_id, conv, read_seq) rows, kept at their greatest. */
const ownReadSql = (rows: number) =>
  `INSERT INTO read_positions (user_id, conv, read_seq) VALUES ${Array(rows).fill("(?,?,?)").join(",")} ON DUPLICATE KEY UPDATE read_seq = GREATEST(read_seq, VALUES(read_seq))`;

/** One INSERT: its rows' values, PER_ROW per row, in COLUMNS order, and each row's event. */
interface Chunk {
  params: unknown[];
  rows: number;
  events: { id: string; conv: string; seq: number; d: Buffer; uid: number; cmid?: string; ts: number }[];
}

/**
 * Gives a message a new seq after MySQL's highest. No KEYS; ARGV: conv key, MySQL's highest seq,
 * stream key, pending key, packed event, idem key ("" if none), id, ts. Raises the counter to at
 * least MySQL's highest, takes the next seq, appends the event to the stream and the pending zset,
 * and points an existing idem key at the new seq. Returns the new seq.
 */
const RESEQ = `
local cur = tonumber(redis.call('HGET', ARGV[1], 'seq')) or 0
if tonumber(ARGV[2]) > cur then redis.call('HSET', ARGV[1], 'seq', ARGV[2]) end
local seq = redis.call('HINCRBY', ARGV[1], 'seq', 1)
redis.call('XADD', ARGV[3], '*', 'n', seq, 'd', ARGV[5])
redis.call('ZADD', ARGV[4], seq, ARGV[5])
if ARGV[6] ~= '' then redis.call('SET', ARGV[6], ARGV[7] .. '|' .. seq .. '|' .. ARGV[8], 'XX', 'KEEPTTL') end
return seq
`;

/** (user, conv) pairs already written by this handler: skipped, so a busy room costs no statement per batch. */
const SEEN_MAX = 100_000;

export class PersistHandler {
  constructor(private readonly o: PersistOptions) {}

  readonly handle = async (entries: StreamEntry[]): Promise<AckHook | void> => {
    const { metrics, log } = this.o;
    const maxRows = this.o.maxRows ?? 500;
    const maxBytes = this.o.maxBytes ?? 4 << 20;
    metrics.persistBatch.observe(entries.length);
    // Split so no statement nears max_allowed_packet (a body is at most 4000 code points, 16 KB).
    const chunks: Chunk[] = [];
    let cur: Chunk = { params: [], rows: 0, events: [] };
    const members: [number, string][] = [];
    const member = (uid: number, conv: string) => {
      const k = `${uid}|${conv}`;
      if (this.seen.has(k)) return;
      this.seen.add(k);
      members.push([uid, conv]);
    };
    let bytes = 0;
    let rows = 0;
    const maxSeq = new Map<string, number>();
    const acceptedAt: number[] = [];
    /** conv → sender → highest seq they sent in this batch. */
    const ownSeq = new Map<string, Map<number, number>>();
    for (const e of entries) {
      let ev: StreamEvent;
      let id: bigint, senderId: number, senderName: string, size: number;
      try {
        ev = parseEvent(e.d);
        if (ev.t === "p" && ev.event === "join" && Number.isSafeInteger(ev.user?.userId)) member(ev.user.userId, `room:${ev.room}`);
        if (ev.t !== "m") continue;
        // Everything that can throw on a malformed entry, before any of it is pushed.
        id = BigInt(ev.id);
        ({ userId: senderId, userName: senderName } = ev.from);
        size = ev.body.length * 3 + 200;
      } catch (err) {
        log.warn("dropping undecodable stream entry", { id: e.id, err });
        continue;
      }
      if (cur.rows && (cur.rows >= maxRows || bytes + size > maxBytes)) {
        chunks.push(cur);
        cur = { params: [], rows: 0, events: [] };
        bytes = 0;
      }
      cur.params.push(id, ev.conv, e.n, senderId, senderName, ev.body, ev.ts, ev.cmid ?? null);
      cur.events.push({ id: ev.id, conv: ev.conv, seq: e.n, d: e.d, uid: senderId, cmid: ev.cmid, ts: ev.ts });
      cur.rows++;
      member(senderId, ev.conv);
      const dm = /^dm:(\d+):(\d+)$/.exec(ev.conv);
      if (dm) for (const u of [Number(dm[1]), Number(dm[2])]) if (u !== senderId) member(u, ev.conv);
      acceptedAt.push(ev.ts);
      bytes += size;
      rows++;
      maxSeq.set(ev.conv, Math.max(maxSeq.get(ev.conv) ?? 0, e.n));
      let senders = ownSeq.get(ev.conv);
      if (!senders) ownSeq.set(ev.conv, (senders = new Map()));
      senders.set(senderId, Math.max(senders.get(senderId) ?? 0, e.n));
    }
    if (!rows) {
      if (members.length) await this.writeMembers(members);
      return;
    }
    chunks.push(cur);
    let inserted = 0;
    const collided: Chunk["events"] = [];
    for (const chunk of chunks) {
      const sql = insertSql(chunk.rows);
      const res = await this.query<ResultSetHeader>("message insert", sql, chunk.params);
      inserted += res.affectedRows;
      // Fewer rows than sent: replays (id already stored) or collisions (conv, seq taken by another id).
      if (res.affectedRows < chunk.rows) collided.push(...(await this.collisions(chunk)));
    }
    const own: unknown[] = [];
    for (const [conv, senders] of ownSeq) for (const [uid, seq] of senders) own.push(uid, conv, seq);
    for (let i = 0; i < own.length; i += 3 * 500) {
      const part = own.slice(i, i + 3 * 500);
      await this.query("read position upsert", ownReadSql(part.length / 3), part);
    }
    if (members.length) await this.writeMembers(members);
    metrics.rowsPersisted.inc(inserted);
    const now = Date.now();
    for (const ts of acceptedAt) metrics.persistDelay.observe(Math.max(0, now - ts) / 1000);
    log.debug("persist batch stored", { entries: entries.length, rows, inserted });
    const top = collided.length ? await this.maxSeqs([...new Set(collided.map((c) => c.conv))]) : new Map<string, number>();
    for (const c of collided) {
      metrics.seqCollisions.inc();
      log.error("seq collision: (conv, seq) already stored with another id; giving the message a new seq", { conv: c.conv, seq: c.seq, id: c.id, mysqlMaxSeq: top.get(c.conv) ?? 0 });
    }
    const { keys, stream } = this.o;
    // Stream order is seq order per conversation, so every seq up to the max is now in MySQL.
    return (tx) => {
      for (const [conv, seq] of maxSeq) tx.zremrangebyscore(keys.pending(conv), "-inf", seq);
      for (const c of collided) {
        const idem = c.cmid !== undefined ? keys.idem(c.uid, c.conv, c.cmid) : "";
        tx.eval(RESEQ, 0, keys.conv(c.conv), top.get(c.conv) ?? 0, stream, keys.pending(c.conv), c.d, idem, c.id, c.ts);
      }
    };
  };

  private readonly seen = new Set<string>();

  private async writeMembers(pairs: [number, string][]): Promise<void> {
    const sql = `INSERT IGNORE INTO user_conversations (user_id, conv) VALUES ${pairs.map(() => "(?,?)").join(",")}`;
    try {
      await this.query("conversation list insert", sql, pairs.flat());
    } catch (err) {
      for (const [u, c] of pairs) this.seen.delete(`${u}|${c}`);
      throw err;
    }
    if (this.seen.size > SEEN_MAX) this.seen.clear();
  }

  /** The chunk's rows whose id is not in MySQL after the INSERT IGNORE: their (conv, seq) was taken. */
  private async collisions(chunk: Chunk): Promise<Chunk["events"]> {
    const ids = chunk.events.map((e) => e.id);
    const rows = await this.query<{ id: string }[]>("collision check", `SELECT id FROM messages WHERE id IN (${ids.map(() => "?").join(",")})`, ids);
    const stored = new Set(rows.map((r) => String(r.id)));
    return chunk.events.filter((e) => !stored.has(e.id));
  }

  private async maxSeqs(convs: string[]): Promise<Map<string, number>> {
    const rows = await this.query<{ conv: string; s: number }[]>(
      "max seq",
      `SELECT conv, MAX(seq) AS s FROM messages WHERE conv IN (${convs.map(() => "?").join(",")}) GROUP BY conv`,
      convs,
    );
    return new Map(rows.map((r) => [r.conv, Number(r.s)]));
  }

  private async query<T>(what: string, sql: string, params: unknown[]): Promise<T> {
    try {
      const [res] = await this.o.pool.query(sql, params);
      return res as T;
    } catch (err) {
      // A mysql2 error carries the whole statement with its values (.sql), bodies included: log
      // only the driver's code and message (ECONNREFUSED, ER_NO_SUCH_TABLE, …).
      const code = mysqlCode(err);
      throw Object.assign(new Error(`${what} failed: ${(err as Error)?.message || code || "unknown error"}`), { code });
    }
  }
}
