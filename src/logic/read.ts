// Read positions (CONTRACT.md v1.1 "readSeq"): per user and conversation, the highest seq read.
// A user's readSeq is the max of two numbers kept in Redis:
// - the explicit position: one hash per user (keys.readSeqs: conv → readSeq, and field "_" once
//   the user's rows were loaded from MySQL), moved by reads and written behind to MySQL;
// - the own-send position: the conversation hash's field "s:<userId>" (ownSeqField), the last seq
//   the user sent there, set by the send script in the HSET it already makes (no extra command
//   on the send path), and made durable by task's persist group, which upserts each batch's
//   (sender, conv, max seq) into read_positions with the messages.
//
// - markRead: one Lua call computes max(readSeq, min(seq, lastSeq)), and only when that changes
//   stores it, marks the hash dirty and appends an "rd" event to the conversation's stream
//   partition; task routes it to the user's connections (`read`) and a DM's other user (`receipt`).
// - A user's own send moves their readSeq (the own-send position) without a push: every
//   connection of the sender and of a DM's peer gets that message's `msg` anyway.
// - Write-behind: every FLUSH_EVERY_MS a logic instance claims up to FLUSH_BATCH dirty hashes
//   (SPOP into a claims hash with the claim time), upserts their rows with
//   read_seq = GREATEST(read_seq, VALUES(read_seq)) (idempotent, never moves back), then drops its
//   claims. A hash changed meanwhile is dirty again and written again; a claim left by a crashed
//   instance is taken over after CLAIM_STALE_MS. While MySQL is down the claims go stale and are
//   retried; Redis stays the authority meanwhile.
// - Rebuild: a hash without "_" (Redis lost it, or the user is new to this Redis) is merged with
//   the user's MySQL rows (max per field) before it is read.
import type Redis from "ioredis";
import { eq, sql } from "drizzle-orm";
import type { Db } from "../shared/db/index.ts";
import { readPositions } from "../shared/db/schema.ts";
import { AppError, badRequest } from "../shared/errors.ts";
import { ownSeqField, partitionOf, type Keys } from "../shared/keys.ts";
import { isParticipant, isSeq, isUserId, parseConv, type ParsedConv } from "../shared/protocol.ts";
import { encodeEvent } from "../shared/stream.ts";
import type { Logger } from "../shared/log.ts";
import type { ReadReq, ReadRes } from "../../proto/logic.ts";
import { LOADED, type ReadScripts } from "./scripts-read.ts";

const FLUSH_EVERY_MS = 500;
const FLUSH_BATCH = 500;
const CLAIM_STALE_MS = 30_000;

/** The parsed conv if user may use it (any room; a DM only its own users), else BAD_REQUEST / FORBIDDEN. */
export function convFor(userId: number, conv: unknown): ParsedConv {
  const pc = typeof conv === "string" ? parseConv(conv) : null;
  if (!pc) throw badRequest("conv must be room:<roomId> or dm:<a>:<b> with a <= b");
  if (!isParticipant(pc, userId)) throw new AppError("FORBIDDEN", "not your conversation");
  return pc;
}

export class ReadPositions {
  private readonly redis: Redis & ReadScripts;
  private timer?: ReturnType<typeof setInterval>;
  private flushing?: Promise<void>;
  private readonly prefix: string;

  constructor(
    private readonly deps: {
      db: Db;
      redis: Redis & ReadScripts;
      keys: Keys;
      streamPartitions: number;
      log: Logger;
      /** How old (ms) another flusher's claim must be to be taken over (default CLAIM_STALE_MS). */
      claimStaleMs?: number;
    },
  ) {
    this.redis = deps.redis;
    this.prefix = deps.keys.readSeqs(0).slice(0, -1);
  }

  /**
   * readSeq := max(readSeq, min(seq, lastSeq)) for req.user in req.conv; pushes `read`/`receipt`
   * (through the stream) only when it changed. A room marked read joins the user's conversations.
   * Errors: BAD_REQUEST (conv, seq not an integer ≥ 0), FORBIDDEN (another pair's DM).
   */
  async markRead(req: ReadReq): Promise<ReadRes> {
    const { keys, streamPartitions } = this.deps;
    if (!req || !req.user || !Number.isSafeInteger(req.user.userId) || typeof req.user.userName !== "string") throw badRequest("malformed read");
    const pc = convFor(req.user.userId, req.conv);
    if (!isSeq(req.seq)) throw badRequest("seq must be an integer >= 0");
    if (req.origin !== undefined && typeof req.origin !== "string") throw badRequest("malformed origin");
    const uid = req.user.userId;
    const rd = keys.readSeqs(uid);
    const ev = encodeEvent({ t: "rd", conv: req.conv, user: { userId: uid, userName: req.user.userName }, ...(req.origin ? { o: req.origin } : {}) });
    const run = () =>
      this.redis.imMarkRead(
        rd,
        keys.conv(req.conv),
        pc.kind === "room" ? keys.userConvs(uid) : rd,
        keys.readDirty,
        keys.stream(partitionOf(req.conv, streamPartitions)),
        keys.userInstances(uid),
        req.conv,
        String(req.seq),
        ev,
        pc.kind === "room" && req.origin ? "1" : "0",
        ownSeqField(uid),
      );
    let [readSeq] = await run();
    if (readSeq < 0) {
      await this.load(uid);
      [readSeq] = await run();
    }
    return { conv: req.conv, readSeq: Math.max(0, readSeq) };
  }

  /**
   * The user's readSeq in each of convs (0 where none), loading the hash from MySQL first if
   * needed. own: the user's own-send field (ownSeqField) of each conv hash, if the caller read
   * them already (conversations.ts); else they are read here.
   */
  async get(uid: number, convs: string[], own?: readonly (string | null)[]): Promise<number[]> {
    const { keys } = this.deps;
    const rd = keys.readSeqs(uid);
    const field = ownSeqField(uid);
    const [explicit, sent] = await Promise.all([
      this.redis.hmget(rd, LOADED, ...convs).then(async (vals) => {
        if (vals[0] !== null) return vals;
        await this.load(uid);
        return this.redis.hmget(rd, LOADED, ...convs);
      }),
      own ?? Promise.all(convs.map((c) => this.redis.hget(keys.conv(c), field))),
    ]);
    return convs.map((_, i) => Math.max(Number(explicit[i + 1]) || 0, Number(sent[i]) || 0));
  }

  private async load(uid: number): Promise<void> {
    const rows = await this.deps.db
      .select({ conv: readPositions.conv, readSeq: readPositions.readSeq })
      .from(readPositions)
      .where(eq(readPositions.userId, uid));
    await this.redis.imReadLoad(this.deps.keys.readSeqs(uid), ...rows.flatMap((r) => [r.conv, String(r.readSeq)]));
  }

  /** Starts the write-behind loop (see the top of this file). */
  start(): void {
    this.timer = setInterval(() => void this.flush(), FLUSH_EVERY_MS);
  }

  /** Stops the loop after one last flush. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.flushing;
    await this.flush();
  }

  /** One write-behind round; resolves when done (errors are logged, the claims then go stale and are retried). */
  flush(): Promise<void> {
    this.flushing ??= this.flushOnce()
      .catch((e) => this.deps.log.warn("read positions write-behind failed", { err: e }))
      .finally(() => (this.flushing = undefined));
    return this.flushing;
  }

  private async flushOnce(): Promise<void> {
    const { keys, db } = this.deps;
    const now = String(Date.now());
    const claimed = await this.redis.imReadClaim(keys.readDirty, keys.readClaims, now, String(FLUSH_BATCH), String(this.deps.claimStaleMs ?? CLAIM_STALE_MS));
    if (!claimed.length) return;
    const pipe = this.redis.pipeline();
    for (const k of claimed) pipe.hgetall(k);
    const res = (await pipe.exec()) ?? [];
    const rows: { userId: number; conv: string; readSeq: number }[] = [];
    claimed.forEach((k, i) => {
      const [err, h] = res[i] ?? [];
      if (err) throw err;
      const userId = Number(k.slice(this.prefix.length));
      if (!isUserId(userId)) return;
      for (const [conv, v] of Object.entries((h ?? {}) as Record<string, string>)) {
        if (conv !== LOADED && parseConv(conv)) rows.push({ userId, conv, readSeq: Number(v) || 0 });
      }
    });
    for (let i = 0; i < rows.length; i += 1000) {
      await db
        .insert(readPositions)
        .values(rows.slice(i, i + 1000))
        .onDuplicateKeyUpdate({ set: { readSeq: sql`GREATEST(${readPositions.readSeq}, VALUES(${readPositions.readSeq}))` } });
    }
    await this.redis.imReadUnclaim(keys.readClaims, now, ...claimed);
  }
}
