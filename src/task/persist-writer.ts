// The MySQL writes of the persist group, shared by the handlers of every partition a worker owns:
// the batches handed in during one event-loop turn (the persist consumer starts all batches of a
// round together) are written together, with one multi-row INSERT IGNORE of their messages
// (split by rows and bytes), one read-position upsert and one conversation-list INSERT IGNORE,
// instead of two or three statements per partition. A round over 8 partitions thus makes 2-3
// statements instead of 16-24 (bench/journal/2026-11-30.md, "30 Nov, afternoon: task"). Every
// statement is idempotent (INSERT IGNORE on id and (conv, seq); GREATEST for read positions), so
// when one fails, every batch of the flush fails and is retried as a whole, writing nothing twice.
//
// The statements are built by hand on the mysql2 pool (no query builder): one cached SQL string
// per row count, one flat parameter array, sent with pool.query (text protocol, escaped by
// mysql2). pool.execute was no cheaper for full batches and clearly dearer for the varying sizes
// of lingered batches (a PREPARE per new size and connection, bench/persist.ts --batches 1-500),
// and its statements would pile up on the server (maxRows per connection).
import type { Pool, ResultSetHeader } from "mysql2/promise";
import { mysqlCode } from "../shared/db/index.ts";
import type { TaskMetrics } from "./metrics.ts";

/** One message row, as unpacked from its stream entry. */
export interface MessageRow {
  id: bigint;
  conv: string;
  seq: number;
  senderId: number;
  senderName: string;
  body: string;
  ts: number;
  cmid?: string;
  /** The packed event (re-sequenced as is on a collision). */
  d: Buffer;
}

/** What one batch gives to write. */
export interface WritePart {
  rows: MessageRow[];
  /** (user, conv, readSeq): own-send read positions, kept at their greatest. */
  own: [number, string, number][];
  /** (user, conv) conversation-list rows. */
  members: [number, string][];
}

export interface WriterOptions {
  pool: Pool;
  metrics: Pick<TaskMetrics, "rowsPersisted">;
  /** Upper bound of one INSERT statement, in rows and in (estimated) bytes of body. */
  maxRows?: number;
  maxBytes?: number;
}

// Column order of the placeholders; see migrations/001_init.sql and src/shared/db/schema.ts.
const COLUMNS = ["id", "conv", "seq", "sender_id", "sender_name", "body", "ts", "client_msg_id"];
const HEAD = `INSERT IGNORE INTO messages (${COLUMNS.join(", ")}) VALUES `;
const ROW = `(${Array(COLUMNS.length).fill("?").join(",")})`;
/** Statement by row count: at most maxRows strings, ~2.3 MB if every count from 1 to 500 occurs. */
const statements: string[] = [];
const insertSql = (rows: number): string => (statements[rows] ??= HEAD + Array(rows).fill(ROW).join(","));
/** migrations/002_read_positions.sql: (user_id, conv, read_seq) rows, kept at their greatest. */
const ownReadSql = (rows: number) =>
  `INSERT INTO read_positions (user_id, conv, read_seq) VALUES ${Array(rows).fill("(?,?,?)").join(",")} ON DUPLICATE KEY UPDATE read_seq = GREATEST(read_seq, VALUES(read_seq))`;
const membersSql = (rows: number) => `INSERT IGNORE INTO user_conversations (user_id, conv) VALUES ${Array(rows).fill("(?,?)").join(",")}`;
/** Rows per read-position or conversation-list statement. */
const SMALL_ROWS = 500;
/** (user, conv) pairs already written: skipped, so a busy room costs no conversation-list row per batch. */
const SEEN_MAX = 100_000;

/** Estimated bytes of a row in a statement (a body is at most 4000 code points, 16 KB). */
const rowBytes = (body: string): number => body.length * 3 + 200;

interface Queued {
  part: WritePart;
  resolve: (collided: MessageRow[]) => void;
  reject: (err: unknown) => void;
}

export class PersistWriter {
  private queue: Queued[] = [];
  private readonly seen = new Set<string>();

  constructor(private readonly o: WriterOptions) {}

  /**
   * Writes the part with whatever else is handed in this event-loop turn. Resolves, once every
   * statement of the flush has succeeded, with the part's rows that MySQL did not store because
   * their (conv, seq) holds another id (a collision); rejects with Error(`<what> failed: <driver
   * message>`) and the driver's code, never the values, if any statement failed.
   */
  write(part: WritePart): Promise<MessageRow[]> {
    return new Promise((resolve, reject) => {
      if (!this.queue.length) setImmediate(() => void this.flush());
      this.queue.push({ part, resolve, reject });
    });
  }

  private async flush(): Promise<void> {
    const batch = this.queue;
    this.queue = [];
    const fresh: string[] = [];
    try {
      const collided = await this.insertMessages(batch.map((q) => q.part.rows));
      await this.upsertOwn(batch.flatMap((q) => q.part.own));
      const members: [number, string][] = [];
      for (const q of batch)
        for (const [u, c] of q.part.members) {
          const k = `${u}|${c}`;
          if (this.seen.has(k)) continue;
          this.seen.add(k);
          fresh.push(k);
          members.push([u, c]);
        }
      for (let i = 0; i < members.length; i += SMALL_ROWS) {
        const part = members.slice(i, i + SMALL_ROWS);
        await this.query("conversation list insert", membersSql(part.length), part.flat());
      }
      if (this.seen.size > SEEN_MAX) this.seen.clear();
      batch.forEach((q, i) => q.resolve(collided[i]));
    } catch (err) {
      for (const k of fresh) this.seen.delete(k);
      for (const q of batch) q.reject(err);
    }
  }

  /** One INSERT IGNORE per chunk of rows; per part, its rows not stored (collisions). */
  private async insertMessages(parts: MessageRow[][]): Promise<MessageRow[][]> {
    const maxRows = this.o.maxRows ?? 500;
    const maxBytes = this.o.maxBytes ?? 4 << 20;
    const collided: MessageRow[][] = parts.map(() => []);
    let chunk: { row: MessageRow; part: number }[] = [];
    let bytes = 0;
    let inserted = 0;
    const send = async () => {
      if (!chunk.length) return;
      const params: unknown[] = [];
      for (const { row: r } of chunk) params.push(r.id, r.conv, r.seq, r.senderId, r.senderName, r.body, r.ts, r.cmid ?? null);
      const res = await this.query<ResultSetHeader>("message insert", insertSql(chunk.length), params);
      inserted += res.affectedRows;
      // Fewer rows than sent: replays (id already stored) or collisions (conv, seq taken by another id).
      if (res.affectedRows < chunk.length) for (const c of await this.collisions(chunk)) collided[c.part].push(c.row);
      chunk = [];
      bytes = 0;
    };
    for (const [i, rows] of parts.entries())
      for (const row of rows) {
        const size = rowBytes(row.body);
        if (chunk.length && (chunk.length >= maxRows || bytes + size > maxBytes)) await send();
        chunk.push({ row, part: i });
        bytes += size;
      }
    await send();
    this.o.metrics.rowsPersisted.inc(inserted);
    return collided;
  }

  private async upsertOwn(own: [number, string, number][]): Promise<void> {
    for (let i = 0; i < own.length; i += SMALL_ROWS) {
      const part = own.slice(i, i + SMALL_ROWS);
      await this.query("read position upsert", ownReadSql(part.length), part.flat());
    }
  }

  /** The chunk's rows whose id is not in MySQL after the INSERT IGNORE: their (conv, seq) was taken. */
  private async collisions<T extends { row: MessageRow }>(chunk: T[]): Promise<T[]> {
    const ids = chunk.map((c) => c.row.id);
    const rows = await this.query<{ id: string }[]>("collision check", `SELECT id FROM messages WHERE id IN (${ids.map(() => "?").join(",")})`, ids);
    const stored = new Set(rows.map((r) => String(r.id)));
    return chunk.filter((c) => !stored.has(String(c.row.id)));
  }

  /** MySQL's highest seq per conversation. */
  async maxSeqs(convs: string[]): Promise<Map<string, number>> {
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
