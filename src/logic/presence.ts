// Who is online where: room members, room → connect instances and user → connect instances,
// kept in Redis by the ops connect instances send, and cleaned up when a connect instance dies
// (its etcd lease expires): every holding it recorded is debited and presence leave events emitted.
import type Redis from "ioredis";
import type { Keys } from "../shared/keys.ts";
import { partitionOf } from "../shared/keys.ts";
import { AppError, badRequest } from "../shared/errors.ts";
import { ROOM_ID_RE, roomConv, type UserRef } from "../shared/protocol.ts";
import { encodeEvent } from "../shared/stream.ts";
import type { Config } from "../shared/config.ts";
import type { Logger } from "../shared/log.ts";
import type { Result } from "../shared/batcher.ts";
import type { Scripts } from "./scripts.ts";
import type { Accounts } from "./accounts.ts";
import type { SeqFence } from "./seq-fence.ts";
import type { JoinInfo, PresenceOp, RoomInfo } from "../../proto/logic.ts";

// Holdings fields, one per connection: "r|<room>|<uid>|<conn>" and "u|<uid>|<conn>".
const roomField = (room: string, uid: number, conn: number) => `r|${room}|${uid}|${conn}`;
const userField = (uid: number, conn: number) => `u|${uid}|${conn}`;

export class Presence {
  constructor(
    private readonly deps: { redis: Redis & Scripts; keys: Keys; config: Readonly<Config>; accounts: Accounts; fence: SeqFence; log: Logger },
  ) {}

  /**
   * A room's lastSeq as read from Redis (seq, and the seq fence's ep read with it), seeded from
   * MySQL first if this Redis server has not checked that counter (README "Redis losing its
   * tail"): a join or room info right after Redis lost data never reports a lastSeq below what
   * clients already have. Seeding failed (MySQL down): Redis's value, logged.
   */
  private async fencedSeq(conv: string, seq: number, ep: string | null): Promise<number> {
    const { redis, keys, fence, log } = this.deps;
    if (await fence.checked(ep)) return seq;
    try {
      await fence.seed([conv]);
      return Number(await redis.hget(keys.conv(conv), "seq")) || 0;
    } catch (e) {
      log.warn("seeding a seq counter from MySQL failed", { err: (e as Error).message });
      return seq;
    }
  }

  private streamOf(room: string) {
    return this.deps.keys.stream(partitionOf(roomConv(room), this.deps.config.streamPartitions));
  }

  private leave(holdings: string, inst: string, user: UserRef, room: string, field: string): Promise<number> {
    const { redis, keys } = this.deps;
    return redis.imLeave(
      [keys.roomMembers(room), keys.roomInstances(room), holdings, this.streamOf(room)],
      [inst, user.userId, field, encodeEvent({ t: "p", room, event: "leave", user })],
    );
  }

  private disconnect(holdings: string, inst: string, uid: number, field: string): Promise<number> {
    return this.deps.redis.imDisconnect([this.deps.keys.userInstances(uid), holdings], [inst, field]);
  }

  /** Applies ops in order (issued without awaiting in between, so Redis runs them in order). */
  async apply(ops: PresenceOp[]): Promise<Result<JoinInfo | null>[]> {
    const { redis, keys } = this.deps;
    // The name in join/leave events comes from our records, never from the caller's op.user.
    const named = await this.deps.accounts.userRefs(ops.map((op) => (op?.k === "join" || op?.k === "leave" ? op.user?.userId : undefined)));
    const calls = ops.map(async (op, i): Promise<Result<JoinInfo | null>> => {
      if (!op || typeof op.inst !== "string" || !Number.isSafeInteger(op.conn) || !op.user || !Number.isSafeInteger(op.user.userId))
        throw badRequest("malformed presence op");
      const holdings = keys.instanceHoldings(op.inst);
      const uid = op.user.userId;
      const user = named[i] as UserRef; // undefined only for connect/disconnect (checked next), which name no one
      if ((op.k === "join" || op.k === "leave") && !user) throw new AppError("UNAUTHENTICATED", "unknown user");
      switch (op.k) {
        case "connect":
          await redis.imConnect([keys.userInstances(uid), holdings, keys.instances], [op.inst, userField(uid, op.conn)]);
          return { ok: null };
        case "disconnect":
          await this.disconnect(holdings, op.inst, uid, userField(uid, op.conn));
          return { ok: null };
        case "join": {
          if (!ROOM_ID_RE.test(op.room)) throw badRequest("invalid room");
          const conv = roomConv(op.room);
          const [onlineCount, seq, ep] = await redis.imJoin(
            [keys.roomMembers(op.room), keys.roomInstances(op.room), holdings, this.streamOf(op.room), keys.conv(conv), keys.userConvs(uid), keys.instances],
            [op.inst, uid, roomField(op.room, uid, op.conn), encodeEvent({ t: "p", room: op.room, event: "join", user }), conv, encodeEvent({ t: "r", room: op.room })],
          );
          return { ok: { conv, onlineCount, lastSeq: await this.fencedSeq(conv, seq, ep) } };
        }
        case "leave":
          if (!ROOM_ID_RE.test(op.room)) throw badRequest("invalid room");
          await this.leave(holdings, op.inst, user, op.room, roomField(op.room, uid, op.conn));
          return { ok: null };
        default:
          throw badRequest("unknown presence op");
      }
    });
    return Promise.all(calls.map((c) => c.catch((e) => ({ err: { code: e.code ?? "INTERNAL", message: e.message } }) as Result<null>)));
  }

  async roomInfo(room: string): Promise<RoomInfo> {
    if (typeof room !== "string" || !ROOM_ID_RE.test(room)) throw badRequest("roomId must be 1-64 characters of A-Z a-z 0-9 _ -");
    const { redis, keys } = this.deps;
    const conv = roomConv(room);
    const [uids, [seq, ep]] = await Promise.all([redis.hkeys(keys.roomMembers(room)), redis.hmget(keys.conv(conv), "seq", "ep")]);
    const ids = uids.map(Number).sort((a, b) => a - b);
    const [names, lastSeq] = await Promise.all([this.deps.accounts.names(ids), this.fencedSeq(conv, Number(seq) || 0, ep)]);
    const members = ids.map((userId) => ({ userId, userName: names.get(userId) ?? "" }));
    return { roomId: room, onlineCount: members.length, members, lastSeq };
  }

  /**
   * Debits everything a dead connect instance held. The holdings hash is renamed first so that one
   * cleaner owns it; the scripts never debit more than it records, so a racing cleaner is harmless.
   */
  async cleanupInstance(inst: string): Promise<void> {
    const { redis, keys, log } = this.deps;
    const live = keys.instanceHoldings(inst);
    const dead = `${live}:dead`;
    await redis.rename(live, dead).catch(() => undefined); // no key: nothing held, or another cleaner has it
    const held = await redis.hgetall(dead);
    const fields = Object.entries(held);
    const uidOf = (parts: string[]) => Number(parts[0] === "u" ? parts[1] : parts[2]);
    const userIds = [...new Set(fields.map(([f]) => uidOf(f.split("|"))))];
    const names = await this.deps.accounts.names(userIds);
    await Promise.all(
      fields.map(([field]) => {
        const parts = field.split("|");
        const uid = uidOf(parts);
        if (parts[0] === "u") return this.disconnect(dead, inst, uid, field);
        return this.leave(dead, inst, { userId: uid, userName: names.get(uid) ?? "" }, parts[1], field);
      }),
    );
    await redis.multi().del(dead).srem(keys.instances, inst).exec();
    if (fields.length) log.info("cleaned up dead connect instance", { inst, holdings: fields.length });
  }

  /**
   * Cleans up every instance that holds state in Redis but is not alive in discovery. The known
   * instances are read before the live ones: an instance registers before it sends any op, so one
   * that starts (or registers again under a new id) meanwhile is in the live set whenever it is in
   * the known one. A registration id is never reused after its lease is lost, so what is removed
   * belonged to a dead registration, even if its process lives on under a new id.
   */
  async reconcile(aliveNow: () => Promise<ReadonlySet<string>>): Promise<void> {
    const known = await this.deps.redis.smembers(this.deps.keys.instances);
    if (!known.length) return;
    const alive = await aliveNow();
    for (const inst of known) if (!alive.has(inst)) await this.cleanupInstance(inst);
  }
}
