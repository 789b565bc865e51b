// The send path (validation, ids, one Lua call per batch of up to SEND_CHUNK messages that
// deduplicates, rate-limits, assigns seqs and appends to the streams) and the read path (history
// and sync from MySQL plus the not-yet-persisted zset).
import type Redis from "ioredis";
import { and, between, eq } from "drizzle-orm";
import type { Db } from "../shared/db/index.ts";
import { messages } from "../shared/db/schema.ts";
import { AppError, badRequest } from "../shared/errors.ts";
import { ownSeqField, partitionOf, type Keys } from "../shared/keys.ts";
import { LIMITS, ROOM_ID_RE, dmConv, parseConv, roomConv, type Message } from "../shared/protocol.ts";
import { encodeEvent, parseEvent, toMessage, type StreamEvent } from "../shared/stream.ts";
import type { Config } from "../shared/config.ts";
import type { Result } from "../shared/batcher.ts";
import { SendBatchWriter, type Scripts } from "./scripts.ts";
import type { Snowflake } from "./snowflake.ts";
import type { Accounts } from "./accounts.ts";
import type { ConversationSummary, HistoryReq, HistoryRes, SendAck, SendReq } from "../../proto/logic.ts";

/**
 * How long a transport retryKey (set on every send without a clientMsgId) is remembered. Batcher
 * retries end within a few deadlines (~15 s); at 5,000 sends/s each second of TTL keeps ~5,000 keys
 * (~0.5 MB) in Redis, so a minute is ample without bloating memory.
 */
const RETRY_KEY_TTL_SEC = "60";
const CLIENT_MSG_ID_TTL_SEC = String(LIMITS.idempotencySec);
/** Messages per script call: bounds how long one call holds Redis (and the blob's size). */
const SEND_CHUNK = 256;
const unavailable = (): Result<SendAck> => ({ err: { code: "UNAVAILABLE", message: "message store unavailable" } });
const rateLimited = (): Result<SendAck> => ({ err: { code: "RATE_LIMITED", message: "sending too fast" } });
const isPosInt = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) > 0;
const isSeq = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

function codePoints(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0xd800 || c > 0xdbff) n++;
    else if (i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n++;
      i++;
    } else n++;
  }
  return n;
}

/** Checks a send's shape and returns its conversation id. Target existence is checked later, in bulk. */
function validate(r: SendReq): string {
  if (!r || typeof r !== "object" || !r.from || !isPosInt(r.from.userId)) throw badRequest("malformed send");
  if (typeof r.body !== "string") throw badRequest("body must be a string");
  const len = codePoints(r.body);
  if (len < 1 || len > LIMITS.maxBodyCodePoints) throw badRequest(`body must be 1-${LIMITS.maxBodyCodePoints} characters`);
  if (r.clientMsgId !== undefined && (typeof r.clientMsgId !== "string" || r.clientMsgId.length < 1 || r.clientMsgId.length > 64))
    throw badRequest("clientMsgId must be 1-64 characters");
  const hasRoom = r.room !== undefined;
  if (hasRoom === (r.toUserId !== undefined)) throw badRequest("give exactly one of room and toUserId");
  if (hasRoom) {
    if (typeof r.room !== "string" || !ROOM_ID_RE.test(r.room)) throw badRequest("room must be 1-64 characters of A-Z a-z 0-9 _ -");
    return roomConv(r.room);
  }
  if (!isPosInt(r.toUserId)) throw badRequest("toUserId must be a positive integer");
  return dmConv(r.from.userId, r.toUserId);
}

export class Messages {
  constructor(
    private readonly deps: {
      db: Db;
      redis: Redis & Scripts;
      keys: Keys;
      config: Readonly<Config>;
      accounts: Accounts;
      ids: () => Snowflake;
    },
  ) {}

  private readonly writer = new SendBatchWriter();

  async send(items: SendReq[]): Promise<Result<SendAck>[]> {
    const { redis, keys, config } = this.deps;
    const out: Result<SendAck>[] = new Array(items.length);
    const convs: (string | undefined)[] = items.map((r, i) => {
      try {
        return validate(r);
      } catch (e) {
        out[i] = { err: (e as AppError).toJSON() };
        return undefined;
      }
    });
    // Direct-message targets must exist: one bulk lookup for the whole batch.
    const targets = [...new Set(items.filter((r, i) => convs[i] && r.toUserId !== undefined).map((r) => r.toUserId as number))];
    const known = await this.deps.accounts.names(targets);
    const now = Date.now();
    const nowS = String(now);
    const ids = this.deps.ids();
    const w = this.writer;
    const sent: number[] = []; // indexes of the items handed to the script, in order
    const calls: Promise<string | Error>[] = [];
    const flush = () => calls.push(redis.imSendBatch(w.finish()).catch((e: Error) => e));
    // Calls are issued without awaiting in between: Redis runs them in batch order, and each
    // runs its messages in order, so seqs follow send order.
    w.begin(nowS, config.rateLimitPerSec, config.rateLimitBurst);
    for (let i = 0; i < items.length; i++) {
      const conv = convs[i];
      if (!conv) continue;
      const r = items[i];
      if (r.toUserId !== undefined && !known.has(r.toUserId)) {
        out[i] = { err: { code: "NOT_FOUND", message: "no such user" } };
        continue;
      }
      const id = ids.next(now);
      const ev: StreamEvent = { t: "m", id, conv, from: { userId: r.from.userId, userName: r.from.userName }, body: r.body, ts: now };
      if (r.clientMsgId !== undefined) ev.cmid = r.clientMsgId;
      const idemKey = r.clientMsgId ?? r.retryKey;
      const uid = r.from.userId;
      const senderConvs = keys.userConvs(uid);
      w.add(
        keys.rate(uid),
        idemKey ? keys.idem(uid, conv, idemKey) : "",
        r.clientMsgId ? CLIENT_MSG_ID_TTL_SEC : RETRY_KEY_TTL_SEC,
        keys.conv(conv),
        keys.stream(partitionOf(conv, config.streamPartitions)),
        keys.pending(conv),
        senderConvs,
        r.toUserId !== undefined ? keys.userConvs(r.toUserId) : senderConvs,
        conv,
        id,
        encodeEvent(ev),
        ownSeqField(uid),
      );
      sent.push(i);
      if (w.count === SEND_CHUNK) {
        flush();
        w.begin(nowS, config.rateLimitPerSec, config.rateLimitBurst);
      }
    }
    if (w.count) flush();

    const replies = await Promise.all(calls);
    for (let c = 0, k = 0; c < replies.length; c++) {
      const rep = replies[c];
      const end = Math.min(k + SEND_CHUNK, sent.length);
      if (typeof rep !== "string") {
        for (; k < end; k++) out[sent[k]] = unavailable();
        continue;
      }
      // Per message "id|seq|ts", "" (rate limited) or "!" (failed), joined by ",".
      for (let at = 0; k < end; k++) {
        const i = sent[k];
        let stop = rep.indexOf(",", at);
        if (stop < 0) stop = rep.length;
        if (stop === at) out[i] = rateLimited();
        else if (stop === at + 1 && rep.charCodeAt(at) === 33 /* ! */) out[i] = unavailable();
        else {
          const p1 = rep.indexOf("|", at);
          const p2 = rep.indexOf("|", p1 + 1);
          out[i] = { ok: { id: rep.slice(at, p1), conv: convs[i] as string, seq: Number(rep.slice(p1 + 1, p2)), ts: Number(rep.slice(p2 + 1, stop)) } };
        }
        at = stop + 1;
      }
    }
    return out;
  }

  async history(req: HistoryReq): Promise<HistoryRes> {
    const { redis, keys, db } = this.deps;
    if (!req || typeof req.conv !== "string") throw badRequest("conv is required");
    const pc = parseConv(req.conv);
    if (!pc) throw badRequest("conv must be room:<roomId> or dm:<a>:<b> with a <= b");
    if (pc.kind === "dm" && req.userId !== pc.a && req.userId !== pc.b) throw new AppError("FORBIDDEN", "not your conversation");
    const { afterSeq, beforeSeq } = req;
    if (afterSeq !== undefined && beforeSeq !== undefined) throw badRequest("give at most one of afterSeq and beforeSeq");
    if (afterSeq !== undefined && !isSeq(afterSeq)) throw badRequest("afterSeq must be an integer >= 0");
    if (beforeSeq !== undefined && !isSeq(beforeSeq)) throw badRequest("beforeSeq must be an integer >= 0");
    const limitIn = req.limit ?? LIMITS.historyDefaultLimit;
    if (!Number.isSafeInteger(limitIn) || limitIn < 1) throw badRequest("limit must be an integer >= 1");
    const limit = Math.min(limitIn, req.maxLimit || LIMITS.historyMaxLimit);

    // Seqs are dense (1..lastSeq, no gaps), so the wanted range follows from lastSeq alone.
    const lastSeq = Number(await redis.hget(keys.conv(req.conv), "seq")) || 0;
    let from: number;
    let to: number;
    let hasMore: boolean;
    if (afterSeq !== undefined) {
      from = afterSeq + 1;
      to = Math.min(afterSeq + limit, lastSeq);
      hasMore = afterSeq + limit < lastSeq;
    } else {
      to = Math.min(beforeSeq !== undefined ? beforeSeq - 1 : lastSeq, lastSeq);
      from = Math.max(1, to - limit + 1);
      hasMore = from > 1 && to >= 1;
    }
    if (from > to) return { messages: [], hasMore: afterSeq !== undefined ? hasMore : false };

    // Pending first, then MySQL: a message leaves the pending zset only after it is in MySQL,
    // so reading in this order can never miss one.
    const pend = await redis.zrangebyscoreBuffer(keys.pending(req.conv), from, to, "WITHSCORES");
    const bySeq = new Map<number, Message>();
    for (let i = 0; i + 1 < pend.length; i += 2) {
      const seq = Number(pend[i + 1].toString());
      bySeq.set(seq, toMessage(parseEvent(pend[i]) as Extract<StreamEvent, { t: "m" }>, seq));
    }
    if (bySeq.size < to - from + 1) {
      const rows = await db
        .select()
        .from(messages)
        .where(and(eq(messages.conv, req.conv), between(messages.seq, from, to)));
      for (const r of rows) {
        if (bySeq.has(r.seq)) continue;
        const m: Message = { id: String(r.id), conv: r.conv, seq: r.seq, from: { userId: r.senderId, userName: r.senderName }, body: r.body, ts: r.ts };
        if (r.clientMsgId !== null) m.clientMsgId = r.clientMsgId;
        bySeq.set(r.seq, m);
      }
    }
    return { messages: [...bySeq.values()].sort((a, b) => a.seq - b.seq), hasMore };
  }

  async conversations(userId: number): Promise<Pick<ConversationSummary, "conv" | "lastSeq" | "lastTs">[]> {
    const { redis, keys } = this.deps;
    const convs = await redis.smembers(keys.userConvs(userId));
    const pipe = redis.pipeline();
    for (const c of convs) pipe.hmget(keys.conv(c), "seq", "ts");
    const res = ((await pipe.exec()) ?? []) as [Error | null, (string | null)[]][];
    const list = convs.map((conv, i) => {
      const [seq, ts] = res[i]?.[1] ?? [null, null];
      return { conv, lastSeq: Number(seq) || 0, lastTs: ts ? Number(ts) : null };
    });
    return list.sort((a, b) => (b.lastTs ?? -1) - (a.lastTs ?? -1) || a.conv.localeCompare(b.conv));
  }
}
