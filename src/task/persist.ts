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
// (presence event), with INSERT IGNORE.
// A message whose (conv, seq) MySQL already holds under another id (Redis lost its tail and handed
// the seq out again, e.g. after a failover, before logic's seq fence could catch it) is not
// dropped: it is counted (bunchat_task_seq_collisions_total), logged, and given the next seq
// after MySQL's highest in that conversation, in the same MULTI as the batch's XACK (RESEQ): a
// new stream entry, so it is stored and delivered again under its new seq with the same id.
//
// The MySQL statements themselves are made by a PersistWriter (persist-writer.ts), shared by the
// handlers of all partitions of a worker, which writes the batches of one round together: one
// statement of each kind per round instead of per partition.
import type { Pool } from "mysql2/promise";
import type { Keys } from "../shared/keys.ts";
import type { Logger } from "../shared/log.ts";
import { parseConv } from "../shared/protocol.ts";
import { parseEvent, type StreamEvent } from "../shared/stream.ts";
import type { AckHook } from "./acks.ts";
import type { StreamEntry } from "./consumer.ts";
import type { TaskMetrics } from "./metrics.ts";
import { PersistWriter, type MessageRow } from "./persist-writer.ts";

export interface PersistOptions {
  /** The mysql2 pool of openDb (see poolOf for a drizzle Db). */
  pool: Pool;
  keys: Keys;
  metrics: TaskMetrics;
  log: Logger;
  /** This handler's stream: where a re-sequenced message is appended. */
  stream: string;
  /** Upper bound of one INSERT statement, in rows and in (estimated) bytes of body (when this handler makes its own writer). */
  maxRows?: number;
  maxBytes?: number;
  /** Shared with the other partitions' handlers, so a round's batches are written together (default: one of its own on pool). */
  writer?: PersistWriter;
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

export class PersistHandler {
  private readonly writer: PersistWriter;

  constructor(private readonly o: PersistOptions) {
    this.writer = o.writer ?? new PersistWriter(o);
  }

  readonly handle = async (entries: StreamEntry[]): Promise<AckHook | void> => {
    const { metrics, log } = this.o;
    metrics.persistBatch.observe(entries.length);
    const rows: MessageRow[] = [];
    const members: [number, string][] = [];
    const maxSeq = new Map<string, number>();
    /** conv → sender → highest seq they sent in this batch. */
    const ownSeq = new Map<string, Map<number, number>>();
    for (const e of entries) {
      let ev: StreamEvent;
      let row: MessageRow;
      try {
        ev = parseEvent(e.d);
        if (ev.t === "p" && ev.event === "join" && Number.isSafeInteger(ev.user?.userId)) members.push([ev.user.userId, `room:${ev.room}`]);
        if (ev.t !== "m") continue;
        // Everything that can throw on a malformed entry, before any of it is kept.
        row = { id: BigInt(ev.id), conv: ev.conv, seq: e.n, senderId: ev.from.userId, senderName: ev.from.userName, body: ev.body, ts: ev.ts, cmid: ev.cmid, d: e.d };
        if (typeof row.body !== "string") throw new Error("message without a body");
      } catch (err) {
        log.warn("dropping undecodable stream entry", { id: e.id, err });
        continue;
      }
      rows.push(row);
      members.push([row.senderId, row.conv]);
      const pc = parseConv(row.conv);
      if (pc?.kind === "dm") for (const u of [pc.a, pc.b]) if (u !== row.senderId) members.push([u, row.conv]);
      maxSeq.set(row.conv, Math.max(maxSeq.get(row.conv) ?? 0, e.n));
      let senders = ownSeq.get(row.conv);
      if (!senders) ownSeq.set(row.conv, (senders = new Map()));
      senders.set(row.senderId, Math.max(senders.get(row.senderId) ?? 0, e.n));
    }
    if (!rows.length && !members.length) return;
    const own: [number, string, number][] = [];
    for (const [conv, senders] of ownSeq) for (const [uid, seq] of senders) own.push([uid, conv, seq]);
    const collided = await this.writer.write({ rows, own, members });
    if (!rows.length) return;
    const now = Date.now();
    for (const r of rows) metrics.persistDelay.observe(Math.max(0, now - r.ts) / 1000);
    log.debug("persist batch stored", { entries: entries.length, rows: rows.length, collided: collided.length });
    const top = collided.length ? await this.writer.maxSeqs([...new Set(collided.map((c) => c.conv))]) : new Map<string, number>();
    for (const c of collided) {
      metrics.seqCollisions.inc();
      log.error("seq collision: (conv, seq) already stored with another id; giving the message a new seq", { conv: c.conv, seq: c.seq, id: String(c.id), mysqlMaxSeq: top.get(c.conv) ?? 0 });
    }
    const { keys, stream } = this.o;
    // Stream order is seq order per conversation, so every seq up to the max is now in MySQL.
    return (tx) => {
      for (const [conv, seq] of maxSeq) tx.zremrangebyscore(keys.pending(conv), "-inf", seq);
      for (const c of collided) {
        const idem = c.cmid !== undefined ? keys.idem(c.senderId, c.conv, c.cmid) : "";
        tx.eval(RESEQ, 0, keys.conv(c.conv), top.get(c.conv) ?? 0, stream, keys.pending(c.conv), c.d, idem, String(c.id), c.ts);
      }
    };
  };
}
