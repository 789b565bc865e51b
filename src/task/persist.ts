// The persist group: writes the message events of a batch to MySQL with multi-row INSERT IGNORE,
// idempotent on id and (conv, seq), so a replayed batch writes nothing twice. Only after the rows
// are committed does the consumer XACK the batch and drop those messages from each conversation's
// pending zset (history reads them from there until now). MySQL down: the handler throws, nothing
// is acked, and the consumer retries with backoff until it returns. Other events are just acked.
// (v1.1) With the messages, each sender's own-send read position (the batch's highest seq per
// sender and conversation) is upserted into read_positions, never moving one back (GREATEST): a
// sender's own send moves their readSeq, and this makes that durable (see src/logic/read.ts).
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

/** One INSERT: its rows' values, PER_ROW per row, in COLUMNS order. */
interface Chunk {
  params: unknown[];
  rows: number;
}

export class PersistHandler {
  constructor(private readonly o: PersistOptions) {}

  readonly handle = async (entries: StreamEntry[]): Promise<AckHook | void> => {
    const { metrics, log } = this.o;
    const maxRows = this.o.maxRows ?? 500;
    const maxBytes = this.o.maxBytes ?? 4 << 20;
    metrics.persistBatch.observe(entries.length);
    // Split so no statement nears max_allowed_packet (a body is at most 4000 code points, 16 KB).
    const chunks: Chunk[] = [];
    let cur: Chunk = { params: [], rows: 0 };
    let bytes = 0;
    let rows = 0;
    const maxSeq = new Map<string, number>();
    /** conv → sender → highest seq they sent in this batch. */
    const ownSeq = new Map<string, Map<number, number>>();
    for (const e of entries) {
      let ev: StreamEvent;
      let id: bigint, senderId: number, senderName: string, size: number;
      try {
        ev = parseEvent(e.d);
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
        cur = { params: [], rows: 0 };
        bytes = 0;
      }
      cur.params.push(id, ev.conv, e.n, senderId, senderName, ev.body, ev.ts, ev.cmid ?? null);
      cur.rows++;
      bytes += size;
      rows++;
      maxSeq.set(ev.conv, Math.max(maxSeq.get(ev.conv) ?? 0, e.n));
      let senders = ownSeq.get(ev.conv);
      if (!senders) ownSeq.set(ev.conv, (senders = new Map()));
      senders.set(senderId, Math.max(senders.get(senderId) ?? 0, e.n));
    }
    if (!rows) return;
    chunks.push(cur);
    let inserted = 0;
    for (const chunk of chunks) {
      const sql = insertSql(chunk.rows);
      try {
        const [res] = await this.o.pool.query<ResultSetHeader>(sql, chunk.params);
        inserted += res.affectedRows;
      } catch (err) {
        // A mysql2 error carries the whole statement with its values (.sql), bodies included: log
        // only the driver's code and message (ECONNREFUSED, ER_NO_SUCH_TABLE, …).
        const code = mysqlCode(err);
        throw Object.assign(new Error(`message insert failed: ${(err as Error)?.message || code || "unknown error"}`), { code });
      }
    }
    const own: unknown[] = [];
    for (const [conv, senders] of ownSeq) for (const [uid, seq] of senders) own.push(uid, conv, seq);
    for (let i = 0; i < own.length; i += 3 * 500) {
      const part = own.slice(i, i + 3 * 500);
      try {
        await this.o.pool.query(ownReadSql(part.length / 3), part);
      } catch (err) {
        const code = mysqlCode(err);
        throw Object.assign(new Error(`read position upsert failed: ${(err as Error)?.message || code || "unknown error"}`), { code });
      }
    }
    metrics.rowsPersisted.inc(inserted);
    log.debug("persist batch stored", { entries: entries.length, rows, inserted });
    const { keys } = this.o;
    // Stream order is seq order per conversation, so every seq up to the max is now in MySQL.
    return (tx) => {
      for (const [conv, seq] of maxSeq) tx.zremrangebyscore(keys.pending(conv), "-inf", seq);
    };
  };
}
