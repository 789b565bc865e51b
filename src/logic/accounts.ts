// Users (MySQL) and sessions (Redis, so every logic instance sees them and a logout is seen
// everywhere at once). Tokens are random; Redis keys hold only their SHA-256 (the session id).
import type Redis from "ioredis";
import { eq, inArray } from "drizzle-orm";
import type { Db } from "../shared/db/index.ts";
import { mysqlCode } from "../shared/db/index.ts";
import { users } from "../shared/db/schema.ts";
import { AppError, badRequest } from "../shared/errors.ts";
import type { Keys } from "../shared/keys.ts";
import { USER_NAME_RE, dmConv, isUserId, passwordLengthOk, type UserRef } from "../shared/protocol.ts";
import type { Config } from "../shared/config.ts";
import type { Result } from "../shared/batcher.ts";
import type { Credentials, Session, SessionGrant } from "../../proto/logic.ts";
import type { HashPool } from "./hash-pool.ts";

/** The session id of a token: its SHA-256, hex (what Redis keys hold instead of the token). */
export const sessionId = (token: string) => Bun.SHA256.hash(token, "hex");

const newToken = () => Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64url");

/**
 * The client address a login or registration is limited by: what the api saw (socket peer, or a
 * trusted proxy's X-Forwarded-For), at most 64 characters; "unknown" when a caller gave none.
 */
const clientAddrOf = (c: Credentials): string =>
  typeof c.clientAddr === "string" && c.clientAddr.length > 0 && c.clientAddr.length <= 64 ? c.clientAddr : "unknown";

/**
 * Verified against when the user does not exist, so a miss costs as much as a wrong password.
 * Made once per process on first need (Accounts' constructor starts it, off the event loop), not
 * at module load: task and connect import this module but never log anyone in.
 */
let dummyHash: Promise<string> | undefined;
const getDummyHash = (): Promise<string> => (dummyHash ??= Bun.password.hash("bunchat-dummy-password", { algorithm: "argon2id" }));

function checkCredentials(c: Credentials): { userName: string; password: string } {
  if (!c || typeof c.userName !== "string" || typeof c.password !== "string") throw badRequest("userName and password must be strings");
  if (!USER_NAME_RE.test(c.userName)) throw badRequest("userName must be 3-32 characters of A-Z a-z 0-9 _ . -");
  if (!passwordLengthOk(c.password)) throw badRequest("password must be 8-128 characters");
  return c;
}

/** Entries of the per-process userId → userName cache (~100 bytes each). */
const NAME_CACHE_MAX = 100_000;

export class Accounts {
  constructor(
    private readonly deps: { db: Db; redis: Redis; keys: Keys; config: Readonly<Config>; hashes: HashPool },
  ) {
    void getDummyHash();
  }

  /**
   * Counts one attempt in a fixed window (INCR, and the TTL set by the first) and returns the
   * count including it, atomically (MULTI), so concurrent attempts each see a distinct count.
   */
  private async reserve(key: string, windowSec: number): Promise<{ n: number; ttl: number }> {
    const res = await this.deps.redis.multi().incr(key).expire(key, windowSec, "NX").ttl(key).exec();
    if (!res || res.some(([e]) => e)) throw new AppError("UNAVAILABLE", "service temporarily unavailable");
    return { n: Number(res[0][1]), ttl: Math.max(1, Number(res[2][1])) };
  }

  /** The per-client-address limit on logins and registrations together, whatever the names (CONTRACT.md v1.1). */
  private async limitAddress(addr: string): Promise<void> {
    const { config, keys } = this.deps;
    const { n, ttl } = await this.reserve(keys.authByAddr(addr), config.authAddrWindowSec);
    if (n > config.authAddrLimit) throw new AppError("RATE_LIMITED", "too many logins or registrations from this address; try again later", ttl);
  }

  async register(c: Credentials): Promise<SessionGrant> {
    const { userName, password } = checkCredentials(c);
    this.deps.hashes.checkRoom("hash");
    await this.limitAddress(clientAddrOf(c));
    const passwordHash = await this.deps.hashes.hash(password);
    let userId: number;
    try {
      const [res] = await this.deps.db
        .insert(users)
        .values({ name: userName, nameLower: userName.toLowerCase(), passwordHash, createdAt: Date.now() })
        .$returningId();
      userId = Number(res.id);
    } catch (e) {
      if (mysqlCode(e) === "ER_DUP_ENTRY") throw new AppError("CONFLICT", "userName is taken");
      throw e;
    }
    return this.openSession({ userId, userName });
  }

  /**
   * At most config.loginMaxFailures password checks per user name and client address per
   * loginLockSec window, however many arrive at once: each attempt is reserved (counted) in
   * Redis before the password is checked, and only a success clears the count for that name and
   * address (CONTRACT.md v1.1). Other addresses keep their own count. Errors: BAD_REQUEST,
   * RATE_LIMITED (with retryAfterSec), UNAUTHENTICATED.
   */
  async login(c: Credentials): Promise<SessionGrant> {
    const { redis, keys, config } = this.deps;
    if (!c || typeof c.userName !== "string" || typeof c.password !== "string") throw badRequest("userName and password must be strings");
    if (c.userName.length > 64 || c.password.length > 512) throw new AppError("UNAUTHENTICATED", "wrong userName or password");
    const addr = clientAddrOf(c);
    this.deps.hashes.checkRoom("verify");
    await this.limitAddress(addr);
    const lower = c.userName.toLowerCase();
    const attemptKey = keys.loginFailures(lower, addr);
    const { n, ttl } = await this.reserve(attemptKey, config.loginLockSec);
    if (n > config.loginMaxFailures) throw new AppError("RATE_LIMITED", "too many failed logins; try again later", ttl);
    // Awaited by every login, found or not (resolved long before, once the process has started),
    // so its one-time cost cannot tell a missing user from an existing one.
    const dummy = await getDummyHash();
    const [row] = USER_NAME_RE.test(c.userName)
      ? await this.deps.db.select().from(users).where(eq(users.nameLower, lower)).limit(1)
      : [];
    let ok: boolean;
    try {
      ok = await this.deps.hashes.verify(c.password, row?.passwordHash ?? dummy);
    } catch (e) {
      // Refused before checking (pool full): give the reserved attempt back.
      if (e instanceof AppError && e.code === "RATE_LIMITED") await redis.decr(attemptKey);
      throw e;
    }
    if (!row || !ok) throw new AppError("UNAUTHENTICATED", "wrong userName or password");
    await redis.del(attemptKey);
    return this.openSession({ userId: Number(row.id), userName: row.name });
  }

  private async openSession(user: UserRef): Promise<SessionGrant> {
    const { redis, keys, config } = this.deps;
    const token = newToken();
    const exp = Date.now() + config.sessionTtlSec * 1000;
    await redis
      .multi()
      .hset(keys.session(sessionId(token)), { uid: user.userId, name: user.userName, exp })
      .expire(keys.session(sessionId(token)), config.sessionTtlSec)
      .hset(keys.userNames, String(user.userId), user.userName)
      .exec();
    return { ...user, token };
  }

  /** Revokes one token; the user's open WebSockets on it are closed through a kick event on the stream. */
  async logout(token: string, kick: (userId: number, sid: string, conv: string) => Promise<void>): Promise<void> {
    const sid = sessionId(token);
    const s = await this.deps.redis.hgetall(this.deps.keys.session(sid));
    if (!s.uid) throw new AppError("UNAUTHENTICATED", "invalid or expired token");
    await this.deps.redis.del(this.deps.keys.session(sid));
    const uid = Number(s.uid);
    await kick(uid, sid, dmConv(uid, uid));
  }

  async authenticate(tokens: string[]): Promise<Result<Session>[]> {
    const now = Date.now();
    return Promise.all(
      tokens.map(async (t): Promise<Result<Session>> => {
        if (typeof t !== "string" || !t || t.length > 256) return { err: { code: "UNAUTHENTICATED", message: "missing or malformed token" } };
        const sid = sessionId(t);
        const s = await this.deps.redis.hgetall(this.deps.keys.session(sid));
        if (!s.uid || Number(s.exp) <= now) return { err: { code: "UNAUTHENTICATED", message: "invalid, expired or revoked token" } };
        return { ok: { userId: Number(s.uid), userName: s.name, sid, exp: Number(s.exp) } };
      }),
    );
  }

  /**
   * userId → userName for existing users: this process's cache first (a user's id and name never
   * change, so an entry is never stale), then Redis, then MySQL for misses (which then fill Redis).
   * On the send path this saves a Redis round trip per batch for users seen before.
   */
  async names(ids: number[]): Promise<Map<number, string>> {
    const { redis, keys, db } = this.deps;
    const out = new Map<number, string>();
    const unknown: number[] = [];
    for (const id of ids) {
      const name = this.nameCache.get(id);
      if (name === undefined) unknown.push(id);
      else out.set(id, name);
    }
    if (!unknown.length) return out;
    const cached = await redis.hmget(keys.userNames, ...unknown.map(String));
    const missing: number[] = [];
    unknown.forEach((id, i) => (cached[i] ? out.set(id, cached[i] as string) : missing.push(id)));
    if (missing.length) {
      const rows = await db.select({ id: users.id, name: users.name }).from(users).where(inArray(users.id, missing));
      for (const r of rows) out.set(Number(r.id), r.name);
      if (rows.length) await redis.hset(keys.userNames, Object.fromEntries(rows.map((r) => [String(r.id), r.name])));
    }
    for (const id of unknown) {
      const name = out.get(id);
      if (name === undefined) continue;
      // Bounded: past NAME_CACHE_MAX entries the oldest inserted go first (Map keeps insertion order).
      if (this.nameCache.size >= NAME_CACHE_MAX) this.nameCache.delete(this.nameCache.keys().next().value as number);
      this.nameCache.set(id, name);
    }
    return out;
  }

  /**
   * The users a caller named, as logic's records name them (identity only from our own records,
   * never a caller's userName; CONTRACT.md v1.1): for each of ids, {userId, userName} from
   * names(), or undefined where the id is not a positive safe integer or no such user exists.
   * One lookup for the whole batch. E.g. userRefs(items.map((i) => i?.user?.userId)).
   */
  async userRefs(ids: readonly unknown[]): Promise<(UserRef | undefined)[]> {
    const names = await this.names([...new Set(ids.filter(isUserId))]);
    return ids.map((id) => {
      const userName = isUserId(id) ? names.get(id) : undefined;
      return userName === undefined ? undefined : { userId: id as number, userName };
    });
  }

  private readonly nameCache = new Map<number, string>();
}
