// The persist group: writes the message events of a batch to MySQL with multi-row INSERT IGNORE,
// idempotent on id and (conv, seq), so a replayed batch writes nothing twice. Only after the rows
// are committed does the consumer XACK the batch and drop those messages from each conversation's
// pending zset (history reads them from there until now). MySQL down: the handler throws, nothing
// is acked, and the consumer retries with backoff until it returns. Other events are just acked.
import { mysqlCode, type Db } from "../shared/db/index.ts";
import { messages } from "../shared/db/schema.ts";
import type { Keys } from "../shared/keys.ts";
import type { Logger } from "../shared/log.ts";
import type { Message } from "../shared/protocol.ts";
import { decodeEvent } from "../shared/stream.ts";
import type { AckHook, StreamEntry } from "./consumer.ts";
import type { TaskMetrics } from "./metrics.ts";

export interface PersistOptions {
  db: Db;
  keys: Keys;
  metrics: TaskMetrics;
  log: Logger;
  /** Upper bound of one INSERT statement, in rows and in (estimated) bytes of body. */
  maxRows?: number;
  maxBytes?: number;
}

type Row = typeof messages.$inferInsert;

export class PersistHandler {
  constructor(private readonly o: PersistOptions) {}

  readonly handle = async (entries: StreamEntry[]): Promise<AckHook | void> => {
    const { metrics, log } = this.o;
    metrics.persistBatch.observe(entries.length);
    const rows: Row[] = [];
    const maxSeq = new Map<string, number>();
    for (const e of entries) {
      let msg: Message;
      try {
        const ev = decodeEvent(e.d, e.n);
        if (ev.t !== "m") continue;
        msg = ev.msg;
        rows.push(toRow(msg));
      } catch (err) {
        log.warn("dropping undecodable stream entry", { id: e.id, err });
        continue;
      }
      maxSeq.set(msg.conv, Math.max(maxSeq.get(msg.conv) ?? 0, msg.seq));
    }
    if (!rows.length) return;
    let inserted = 0;
    for (const chunk of chunks(rows, this.o.maxRows ?? 500, this.o.maxBytes ?? 4 << 20)) {
      try {
        const [res] = await this.o.db.insert(messages).ignore().values(chunk);
        inserted += res.affectedRows;
      } catch (err) {
        // drizzle wraps the driver error, and its own message lists the query parameters, bodies
        // included: log only the driver's code and message (ECONNREFUSED, ER_NO_SUCH_TABLE, …).
        const cause = (err as { cause?: Error })?.cause;
        throw Object.assign(new Error(`message insert failed: ${cause?.message ?? mysqlCode(err) ?? "unknown error"}`), { code: mysqlCode(err) });
      }
    }
    metrics.rowsPersisted.inc(inserted);
    log.debug("persist batch stored", { entries: entries.length, rows: rows.length, inserted });
    const { keys } = this.o;
    // Stream order is seq order per conversation, so every seq up to the max is now in MySQL.
    return (tx) => {
      for (const [conv, seq] of maxSeq) tx.zremrangebyscore(keys.pending(conv), "-inf", seq);
    };
  };
}

function toRow(m: Message): Row {
  return {
    id: BigInt(m.id),
    conv: m.conv,
    seq: m.seq,
    senderId: m.from.userId,
    senderName: m.from.userName,
    body: m.body,
    ts: m.ts,
    clientMsgId: m.clientMsgId ?? null,
  };
}

/** Splits rows so no statement nears max_allowed_packet (a body is at most 4000 code points, 16 KB). */
function* chunks(rows: Row[], maxRows: number, maxBytes: number): Generator<Row[]> {
  let cur: Row[] = [];
  let bytes = 0;
  for (const r of rows) {
    const size = r.body.length * 3 + 200;
    if (cur.length && (cur.length >= maxRows || bytes + size > maxBytes)) {
      yield cur;
      cur = [];
      bytes = 0;
    }
    cur.push(r);
    bytes += size;
  }
  if (cur.length) yield cur;
}
