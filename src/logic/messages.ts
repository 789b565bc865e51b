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
import { SeqFence } from "./seq-fence.ts";
import type { Accounts } from "./accounts.ts";
import type { HistoryReq, HistoryRes, SendAck, SendReq } from "../../proto/logic.ts";

/**
 * How long a transport retryKey (set on every send without a clientMsgId) is remembered. Batcher
 * retries end within a few deadlines (~15 s); at 5,000 sends/s each second of TTL keeps ~5,000 keys
 * (~0.5 MB) in Redis, so a minute is ample without bloating memory.
 */
const RETRY_KEY_TTL_SEC = "60";
const CLIENT_MSG_ID_TTL_SEC = String(LIMITS.idempotencySec);
/** Messages per script call: bounds how long one call holds Redis (and the blob's size). */
const SEND_CHUNK = 256;
/**
 * How long before the caller's answer deadline the send script must have started: leaves time for
 * the reply to travel back, so a send Redis stored is not answered UNAVAILABLE by a timer.
 */
const SCRIPT_MARGIN_MS = 500;

/** ioredis errors of a call that never reached Redis, and the send script's deadline refusal. */
const NOT_RUN = /Stream isn't writeable|LATE/;

/** A send that passed validation, with its id and encoded event. */
interface Prepared {
  i: number;
  conv: string;
  id: string;
  event: Uint8Array;
}
const unavailable = (): Result<SendAck> => ({ err: { code: "UNAVAILABLE", message: "message store unavailable" } });
/**
 * A send whose script call reached Redis (or may have) and got no answer in time: Redis may have
 * run it (README "A send whose outcome is unknown"). Still UNAVAILABLE (CONTRACT.md's codes), but
 * the message says so, and the send is audited after the answer (Messages.inDoubtStored).
 */
export const IN_DOUBT_MESSAGE = "message store did not answer in time; it may have stored the send (a retry with the same clientMsgId returns it if so)";
const inDoubt = (): Result<SendAck> => ({ err: { code: "UNAVAILABLE", message: IN_DOUBT_MESSAGE } });
/** How long an in-doubt send's outcome is looked for after the answer (ms): within RETRY_KEY_TTL_SEC. */
const AUDIT_FOR_MS = 50_000;
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
      ids: () => Snowflake | Promise<Snowflake>;
    },
  ) {
    this.fence = new SeqFence(deps);
  }

  private readonly writer = new SendBatchWriter();
  /** Seeds seq counters Redis may have lost (README "Redis losing its tail"). */
  readonly fence: SeqFence;

  /**
   * Accepts a batch of sends, in order. answerBy: local ms since the epoch by which the caller
   * must have its answer (default now + sendTimeoutMs). Nothing is stored once the Redis script
   * would start later than answerBy - SCRIPT_MARGIN_MS (the script checks Redis's clock), so a
   * send answered UNAVAILABLE is not stored later; the caller races this against answerBy.
   * Exception, inherent: a call Redis ran before its deadline but answered after it (hung or died
   * in between) is answered UNAVAILABLE with IN_DOUBT_MESSAGE, and audited (inDoubtStored).
   * In "replica" ack mode an accepted send is answered only once a replica has it (WAIT), else
   * UNAVAILABLE (counted in unconfirmed; it may still be delivered: a retry with the same
   * clientMsgId tells the outcome).
   */
  async send(items: SendReq[], answerBy = Date.now() + this.deps.config.sendTimeoutMs): Promise<Result<SendAck>[]> {
    const { redis, config } = this.deps;
    const out: Result<SendAck>[] = new Array(items.length);
    const convs: (string | undefined)[] = items.map((r, i) => {
      try {
        return validate(r);
      } catch (e) {
        out[i] = { err: (e as AppError).toJSON() };
        return undefined;
      }
    });
    // Direct-message targets must exist, and a sender's name comes from our records, never from
    // the caller (only from.userId, which api/connect took from a verified token): one bulk lookup.
    const targets = new Set(items.filter((r, i) => convs[i] && r.toUserId !== undefined).map((r) => r.toUserId as number));
    for (let i = 0; i < items.length; i++) if (convs[i]) targets.add(items[i].from.userId);
    const known = await this.deps.accounts.names([...targets]);
    const ids = await this.deps.ids();
    const now = Date.now();
    const ready: Prepared[] = [];
    for (let i = 0; i < items.length; i++) {
      const conv = convs[i];
      if (!conv) continue;
      const r = items[i];
      if (r.toUserId !== undefined && !known.has(r.toUserId)) {
        out[i] = { err: { code: "NOT_FOUND", message: "no such user" } };
        continue;
      }
      const userName = known.get(r.from.userId);
      if (userName === undefined) {
        out[i] = { err: { code: "UNAUTHENTICATED", message: "unknown sender" } };
        continue;
      }
      const id = ids.next(now);
      const ev: StreamEvent = { t: "m", id, conv, from: { userId: r.from.userId, userName }, body: r.body, ts: now };
      if (r.clientMsgId !== undefined) ev.cmid = r.clientMsgId;
      ready.push({ i, conv, id, event: encodeEvent(ev) });
    }
    const deadline = answerBy - SCRIPT_MARGIN_MS;
    // A conversation Redis has not checked against MySQL since it (re)started answers "S": seed
    // it from MySQL and send those again (once; a second "S" means Redis restarted meanwhile).
    let todo = ready;
    const unknown: Prepared[] = [];
    for (let round = 0; todo.length && round < 2; round++) {
      const seed = await this.runScripts(items, todo, now, deadline, out, unknown);
      if (!seed.length) break;
      try {
        await this.fence.seed([...new Set(seed.map((p) => p.conv))]);
      } catch (e) {
        this.log?.warn("seeding seq counters from MySQL failed", { err: (e as Error).message });
        break;
      }
      todo = seed;
    }
    for (const p of todo) out[p.i] ??= unavailable();
    if (unknown.length) {
      const unsettled = await this.settleUnknown(items, unknown, answerBy - 100, out);
      if (unsettled.length) {
        for (const p of unsettled) out[p.i] = inDoubt();
        this.inDoubt += unsettled.length;
        this.audit(items, unsettled).catch(() => undefined);
      }
    }
    if (config.ackMode === "replica") {
      const acked = ready.filter((p) => out[p.i]?.ok);
      if (acked.length) {
        const wait = Math.max(1, answerBy - Date.now() - 50);
        const n = await redis.wait(1, wait).catch(() => 0);
        if (n < 1) {
          this.unconfirmed += acked.length;
          for (const p of acked) out[p.i] = { err: { code: "UNAVAILABLE", message: "not confirmed by a Redis replica in time" } };
        }
      }
    }
    return out;
  }

  /** Sends not yet confirmed by a replica in "replica" ack mode (answered UNAVAILABLE), for a metric. */
  unconfirmed = 0;
  log?: { warn(msg: string, f?: Record<string, unknown>): void };

  /**
   * Runs the send script over `todo` in SEND_CHUNK calls, fills out[] for every answered item,
   * adds to `unknown` those whose call failed in flight, and returns the items Redis wants seeded
   * first ("S"), in order.
   */
  private async runScripts(items: SendReq[], todo: Prepared[], now: number, deadline: number, out: Result<SendAck>[], unknown: Prepared[]): Promise<Prepared[]> {
    const { redis, keys, config } = this.deps;
    if (deadline <= Date.now()) return [];
    const nowS = String(now);
    const w = this.writer;
    const calls: Promise<string | Error>[] = [];
    const flush = () => calls.push(redis.imSendBatch(w.finish()).catch((e: Error) => e));
    // Calls are issued without awaiting in between: Redis runs them in batch order, and each
    // runs its messages in order, so seqs follow send order.
    w.begin(nowS, config.rateLimitPerSec, config.rateLimitBurst, deadline);
    for (const p of todo) {
      const r = items[p.i];
      const idemKey = r.clientMsgId ?? r.retryKey;
      const uid = r.from.userId;
      const senderConvs = keys.userConvs(uid);
      w.add(
        keys.rate(uid),
        idemKey ? keys.idem(uid, p.conv, idemKey) : "",
        r.clientMsgId ? CLIENT_MSG_ID_TTL_SEC : RETRY_KEY_TTL_SEC,
        keys.conv(p.conv),
        keys.stream(partitionOf(p.conv, config.streamPartitions)),
        keys.pending(p.conv),
        senderConvs,
        r.toUserId !== undefined ? keys.userConvs(r.toUserId) : senderConvs,
        p.conv,
        p.id,
        p.event,
        ownSeqField(uid),
      );
      if (w.count === SEND_CHUNK) {
        flush();
        w.begin(nowS, config.rateLimitPerSec, config.rateLimitBurst, deadline);
      }
    }
    if (w.count) flush();

    const replies = await Promise.all(calls);
    const seed: Prepared[] = [];
    for (let c = 0, k = 0; c < replies.length; c++) {
      const rep = replies[c];
      const end = Math.min(k + SEND_CHUNK, todo.length);
      if (typeof rep !== "string") {
        // Never sent (no connection) or refused as late: nothing stored. Any other failure (the
        // connection dropped with the call in flight) may have come after Redis ran it.
        const sure = NOT_RUN.test(rep.message);
        for (; k < end; k++) {
          out[todo[k].i] = unavailable();
          if (!sure) unknown.push(todo[k]);
        }
        continue;
      }
      // Per message "id|seq|ts", "" (rate limited), "S" (seed first) or "!" (failed), joined by ",".
      for (let at = 0; k < end; k++) {
        const p = todo[k];
        let stop = rep.indexOf(",", at);
        if (stop < 0) stop = rep.length;
        if (stop === at) out[p.i] = rateLimited();
        else if (stop === at + 1 && rep.charCodeAt(at) === 33 /* ! */) out[p.i] = unavailable();
        else if (stop === at + 1 && rep.charCodeAt(at) === 83 /* S */) seed.push(p);
        else {
          const p1 = rep.indexOf("|", at);
          const p2 = rep.indexOf("|", p1 + 1);
          out[p.i] = { ok: { id: rep.slice(at, p1), conv: p.conv, seq: Number(rep.slice(p1 + 1, p2)), ts: Number(rep.slice(p2 + 1, stop)) } };
        }
        at = stop + 1;
      }
    }
    return seed;
  }

  /**
   * Settles sends whose script call was in flight when the connection to Redis dropped: once Redis
   * answers again (before `until`), a send whose idem key is there was stored (its acceptance is
   * the answer), one without it was not and never will be (nothing is re-sent). Returns those
   * Redis did not answer for by `until` (and any without an idem key): their outcome is unknown,
   * and send() answers them IN_DOUBT_MESSAGE and audits them (README "A send whose outcome is
   * unknown"; a retry with the same clientMsgId tells).
   */
  private async settleUnknown(items: SendReq[], unknown: Prepared[], until: number, out: Result<SendAck>[]): Promise<Prepared[]> {
    const list = unknown.filter((p) => items[p.i].clientMsgId ?? items[p.i].retryKey);
    const found = await this.lookUp(items, list, until);
    if (!found) return unknown;
    list.forEach((p, j) => {
      const ack = found[j];
      if (ack) out[p.i] = { ok: ack };
    });
    return unknown.filter((p) => !list.includes(p));
  }

  /** The acceptances under the sends' idem keys (null: not stored), or undefined if Redis did not answer before `until`. */
  private async lookUp(items: SendReq[], list: Prepared[], until: number): Promise<(SendAck | null)[] | undefined> {
    const { redis, keys } = this.deps;
    if (!list.length) return [];
    while (Date.now() < until) {
      if (redis.status === "ready") {
        try {
          const vals = await redis.mget(...list.map((p) => keys.idem(items[p.i].from.userId, p.conv, (items[p.i].clientMsgId ?? items[p.i].retryKey) as string)));
          return list.map((p, j) => {
            const v = vals[j];
            if (!v) return null;
            const [id, seq, ts] = v.split("|");
            return { id, conv: p.conv, seq: Number(seq), ts: Number(ts) };
          });
        } catch {
          // not back yet
        }
      }
      await Bun.sleep(100);
    }
    return undefined;
  }

  /**
   * After sends were answered UNAVAILABLE with their outcome unknown: once Redis answers again,
   * counts (inDoubtStored) and logs those it had stored after all (ids only, never bodies), so an
   * "UNAVAILABLE but stored" is never silent. A send without an idem key cannot be audited.
   */
  private async audit(items: SendReq[], unsettled: Prepared[]): Promise<void> {
    const list = unsettled.filter((p) => items[p.i].clientMsgId ?? items[p.i].retryKey);
    const found = await this.lookUp(items, list, Date.now() + AUDIT_FOR_MS);
    if (!found) {
      this.log?.warn("sends answered UNAVAILABLE with their outcome unknown could not be audited: Redis did not answer", { sends: list.length });
      return;
    }
    this.reportStored(found.filter((a): a is SendAck => a !== null));
  }

  /**
   * Sends stored by Redis although their sender was answered UNAVAILABLE (Redis answered after
   * the send deadline: it hung, or dropped the connection, right after running the script).
   * Counted in inDoubtStored and logged with ids (never bodies). Also called by the server for
   * acceptances that came back after its answer timer.
   */
  reportStored(acks: SendAck[]): void {
    if (!acks.length) return;
    this.inDoubtStored += acks.length;
    this.log?.warn("sends answered UNAVAILABLE (outcome unknown) were stored: Redis ran them before their deadline but answered after it", {
      sends: acks.length,
      ids: acks.slice(0, 20).map((a) => `${a.conv}#${a.seq}:${a.id}`),
    });
  }

  /** Sends answered UNAVAILABLE with their outcome unknown (IN_DOUBT_MESSAGE), for a metric. */
  inDoubt = 0;
  /** Of those (and of those the server's timer answered), how many Redis had stored, for a metric. */
  inDoubtStored = 0;

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

    // Seqs are dense (1..lastSeq, no gaps), so the wanted range follows from lastSeq alone. A
    // counter this Redis server has not checked against MySQL (Redis lost its tail) is seeded first.
    let [seqS, ep] = await redis.hmget(keys.conv(req.conv), "seq", "ep");
    if (!(await this.fence.checked(ep))) {
      await this.fence.seed([req.conv]).catch((e) => this.log?.warn("seeding a seq counter from MySQL failed", { err: (e as Error).message }));
      seqS = await redis.hget(keys.conv(req.conv), "seq");
    }
    const lastSeq = Number(seqS) || 0;
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
}
