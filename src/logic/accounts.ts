// Users (MySQL) and sessions (Redis, so every logic instance sees them and a logout is seen
// everywhere at once). Tokens are random; Redis keys hold only their SHA-256 (the session id).
import type Redis from "ioredis";
import { eq, inArray } from "drizzle-orm";
import type { Db } from "../shared/db/index.ts";
import { mysqlCode } from "../shared/db/index.ts";
import { users } from "../shared/db/schema.ts";
import { AppError, badRequest } from "../shared/errors.ts";
import type { Keys } from "../shared/keys.ts";
import { USER_NAME_RE, dmConv, type UserRef } from "../shared/protocol.ts";
import type { Config } from "../shared/config.ts";
import type { Result } from "../shared/batcher.ts";
import type { Credentials, Session, SessionGrant } from "../../proto/logic.ts";

export const sessionId = (token: string) => new Bun.CryptoHasher("sha256").update(token).digest("hex");

const newToken = () => Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64url");

/** Verified against when the user does not exist, so a miss costs as much as a wrong password. */
const DUMMY_HASH = Bun.password.hashSync("bunchat-dummy-password", { algorithm: "argon2id" });

function checkCredentials(c: Credentials): { userName: string; password: string } {
  if (!c || typeof c.userName !== "string" || typeof c.password !== "string") throw badRequest("userName and password must be strings");
  if (!USER_NAME_RE.test(c.userName)) throw badRequest("userName must be 3-32 characters of A-Z a-z 0-9 _ . -");
  const len = [...c.password].length;
  if (len < 8 || len > 128) throw badRequest("password must be 8-128 characters");
  return c;
}

export class Accounts {
  constructor(
    private readonly deps: { db: Db; redis: Redis; keys: Keys; config: Readonly<Config> },
  ) {}

  async register(c: Credentials): Promise<SessionGrant> {
    const { userName, password } = checkCredentials(c);
    const passwordHash = await Bun.password.hash(password, { algorithm: "argon2id" });
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

  async login(c: Credentials): Promise<SessionGrant> {
    const { redis, keys, config } = this.deps;
    if (!c || typeof c.userName !== "string" || typeof c.password !== "string") throw badRequest("userName and password must be strings");
    const lower = c.userName.toLowerCase();
    const failKey = keys.loginFailures(lower);
    const failures = Number(await redis.get(failKey)) || 0;
    if (failures >= config.loginMaxFailures) throw new AppError("RATE_LIMITED", "too many failed logins; try again later");
    const [row] = USER_NAME_RE.test(c.userName)
      ? await this.deps.db.select().from(users).where(eq(users.nameLower, lower)).limit(1)
      : [];
    const ok = await Bun.password.verify(c.password, row?.passwordHash ?? DUMMY_HASH);
    if (!row || !ok) {
      await redis.multi().incr(failKey).expire(failKey, config.loginLockSec, "NX").exec();
      throw new AppError("UNAUTHENTICATED", "wrong userName or password");
    }
    if (failures) await redis.del(failKey);
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

  /** userId → userName for existing users (Redis first, MySQL for misses, which then fill Redis). */
  async names(ids: number[]): Promise<Map<number, string>> {
    const { redis, keys, db } = this.deps;
    const out = new Map<number, string>();
    if (!ids.length) return out;
    const cached = await redis.hmget(keys.userNames, ...ids.map(String));
    const missing: number[] = [];
    ids.forEach((id, i) => (cached[i] ? out.set(id, cached[i] as string) : missing.push(id)));
    if (missing.length) {
      const rows = await db.select({ id: users.id, name: users.name }).from(users).where(inArray(users.id, missing));
      for (const r of rows) out.set(Number(r.id), r.name);
      if (rows.length) await redis.hset(keys.userNames, Object.fromEntries(rows.map((r) => [String(r.id), r.name])));
    }
    return out;
  }
}
