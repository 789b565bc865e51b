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
import { parseConv, type ParsedConv } from "../shared/protocol.ts";
import { encodeEvent } from "../shared/stream.ts";
import type { Logger } from "../shared/log.ts";
import type { ReadReq, ReadRes } from "../../proto/logic.ts";

const FLUSH_EVERY_MS = 500;
const FLUSH_BATCH = 500;
const CLAIM_STALE_MS = 30_000;
/** The field that says a user's hash holds their MySQL rows. */
const LOADED = "_";

/**
 * KEYS: readSeqs, conv hash, user convs (or the readSeqs key again: no add), dirty set, stream,
 * user instances. ARGV: conv, seq (decimal), packed "rd" event, "1" if the only recipient of the
 * push would be the user's other connections (a room, asked over WS), own-send field.
 * The current readSeq is max(explicit, own-send); only a seq above it changes anything.
 * Returns {readSeq, changed 0|1}, or {-1, 0} if the hash must be loaded from MySQL first.
 * With ARGV[4] = "1" and at most one open connection of the user (the asking one), no event is
 * appended: there is no one to tell. Most users have one tab, and reads come about as often as
 * messages are shown, so this saves a stream entry, a routing lookup and a push per read.
 */
const MARK_READ = `
if redis.call('HEXISTS', KEYS[1], '${LOADED}') == 0 then return {-1, 0} end
if KEYS[3] ~= KEYS[1] then redis.call('SADD', KEYS[3], ARGV[1]) end
local last = redis.call('HGET', KEYS[2], 'seq') or '0'
local want = ARGV[2]
if tonumber(last) < tonumber(want) then want = last end
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local own = tonumber(redis.call('HGET', KEYS[2], ARGV[5]) or '0')
if own > cur then cur = own end
if tonumber(want) <= cur then return {cur, 0} end
redis.call('HSET', KEYS[1], ARGV[1], want)
redis.call('SADD', KEYS[4], KEYS[1])
if ARGV[4] == '1' then
  local n = 0
  for _, v in ipairs(redis.call('HVALS', KEYS[6])) do n = n + (tonumber(v) or 0) end
  if n <= 1 then return {tonumber(want), 1} end
end
redis.call('XADD', KEYS[5], '*', 'n', want, 'd', ARGV[3])
return {tonumber(want), 1}
`;

/** KEYS: readSeqs. ARGV: conv, readSeq, … (from MySQL). Merges by max and marks the hash loaded. */
const LOAD = `
for i = 1, #ARGV, 2 do
  local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0')
  if tonumber(ARGV[i + 1]) > cur then redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
redis.call('HSET', KEYS[1], '${LOADED}', '1')
return 1
`;

/** KEYS: dirty set, claims hash. ARGV: now ms, max, stale ms. Returns the claimed readSeqs keys. */
const CLAIM = `
local now = tonumber(ARGV[1])
local max = tonumber(ARGV[2])
local out = {}
local claims = redis.call('HGETALL', KEYS[2])
for i = 1, #claims, 2 do
  if #out >= max then break end
  if tonumber(claims[i + 1]) < now - tonumber(ARGV[3]) then
    out[#out + 1] = claims[i]
    redis.call('HSET', KEYS[2], claims[i], ARGV[1])
  end
end
if #out < max then
  for _, k in ipairs(redis.call('SPOP', KEYS[1], max - #out)) do
    out[#out + 1] = k
    redis.call('HSET', KEYS[2], k, ARGV[1])
  end
end
return out
`;

/** KEYS: claims hash. ARGV: claim time, keys…: drops the claims still holding that time. */
const UNCLAIM = `
for i = 2, #ARGV do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[1] then redis.call('HDEL', KEYS[1], ARGV[i]) end
end
return 1
`;

type ReadRedis = Redis & {
  imMarkRead(...a: (string | Buffer)[]): Promise<[number, number]>;
  imReadLoad(...a: string[]): Promise<number>;
  imReadClaim(...a: string[]): Promise<string[]>;
  imReadUnclaim(...a: string[]): Promise<number>;
};

const isSeq = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

/** The parsed conv if user may use it (any room; a DM only its own users), else BAD_REQUEST / FORBIDDEN. */
export function convFor(userId: number, conv: unknown): ParsedConv {
  const pc = typeof conv === "string" ? parseConv(conv) : null;
  if (!pc) throw badRequest("conv must be room:<roomId> or dm:<a>:<b> with a <= b");
  if (pc.kind === "dm" && userId !== pc.a && userId !== pc.b) throw new AppError("FORBIDDEN", "not your conversation");
  return pc;
}

export class ReadPositions {
  private readonly redis: ReadRedis;
  private timer?: ReturnType<typeof setInterval>;
  private flushing?: Promise<void>;
  private readonly prefix: string;

  constructor(
    private readonly deps: {
      db: Db;
      redis: Redis;
      keys: Keys;
      streamPartitions: number;
      log: Logger;
      /** How old (ms) another flusher's claim must be to be taken over (default CLAIM_STALE_MS). */
      claimStaleMs?: number;
    },
  ) {
    const r = deps.redis;
    r.defineCommand("imMarkRead", { lua: MARK_READ, numberOfKeys: 6 });
    r.defineCommand("imReadLoad", { lua: LOAD, numberOfKeys: 1 });
    r.defineCommand("imReadClaim", { lua: CLAIM, numberOfKeys: 2 });
    r.defineCommand("imReadUnclaim", { lua: UNCLAIM, numberOfKeys: 1 });
    this.redis = r as ReadRedis;
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
      if (!Number.isSafeInteger(userId) || userId < 1) return;
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

/** The other user of a DM for userId (userId itself for a note to self). */
export const peerOf = (pc: Extract<ParsedConv, { kind: "dm" }>, userId: number) => (pc.a === userId ? pc.b : pc.a);
