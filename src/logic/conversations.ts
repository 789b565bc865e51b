// GET /api/conversations (CONTRACT.md v1.1): the user's conversations with lastSeq, lastTs,
// readSeq, unread and, for a DM, peer.
// - The list is Redis's set of the user's conversations (keys.userConvs). MySQL's
//   user_conversations (written behind by task) is merged into it once per Redis server process
//   (its epoch, as the seq fence has it; keys.userConvsChecked), so a set Redis lost, or got back
//   from an older copy, comes back; otherwise MySQL is not asked.
// - Each conversation hash is read once, in one pipeline: seq, ts, the seq fence's ep and the
//   user's own-send field (read.ts). Counters this Redis server has not checked against MySQL are
//   seeded (SeqFence) and read again, which happens only after Redis lost data.
import type Redis from "ioredis";
import { eq } from "drizzle-orm";
import type { Db } from "../shared/db/index.ts";
import { userConversations } from "../shared/db/schema.ts";
import { ownSeqField, type Keys } from "../shared/keys.ts";
import { parseConv, peerOf } from "../shared/protocol.ts";
import type { Logger } from "../shared/log.ts";
import type { ConversationSummary } from "../../proto/logic.ts";
import type { SeqFence } from "./seq-fence.ts";
import type { ReadPositions } from "./read.ts";

/** The replies of an ioredis pipeline, throwing the first command error. */
async function replies(p: ReturnType<Redis["pipeline"]>): Promise<unknown[]> {
  return ((await p.exec()) ?? []).map(([err, v]) => {
    if (err) throw err;
    return v;
  });
}

export class Conversations {
  constructor(
    private readonly deps: {
      db: Db;
      redis: Redis;
      keys: Keys;
      fence: SeqFence;
      reads: ReadPositions;
      /** userId → userName from logic's records (Accounts.names). */
      names: (ids: number[]) => Promise<Map<number, string>>;
      log: Logger;
    },
  ) {}

  /**
   * userId's conversations, most recent first (no message yet: last, by conv). unread is
   * lastSeq − readSeq, never below 0; a DM peer missing from names gets userName "". MySQL down
   * while the set must be merged: Redis's set alone (logged), merged on a later call.
   */
  async list(userId: number): Promise<ConversationSummary[]> {
    const { redis, keys, fence } = this.deps;
    const [members, checked] = (await replies(redis.pipeline().smembers(keys.userConvs(userId)).get(keys.userConvsChecked(userId)))) as [string[], string | null];
    // The epoch is cached (SeqFence); fence.checked reads it again once on a mismatch.
    let epoch = (await fence.checked(checked)) ? checked! : await fence.epoch();
    const list = checked === epoch ? members : await this.merge(userId, members, epoch);
    const own = ownSeqField(userId);
    const read = async () => {
      const p = redis.pipeline();
      for (const c of list) p.hmget(keys.conv(c), "seq", "ts", "ep", own);
      return (await replies(p)) as (string | null)[][];
    };
    let hashes = await read();
    // Read the epoch again once: the cached one may predate a promotion on this same connection.
    if (hashes.some((h) => h[2] !== epoch)) {
      fence.forget();
      epoch = await fence.epoch();
    }
    const stale = list.filter((_, i) => hashes[i][2] !== epoch);
    if (stale.length) {
      await fence.seed(stale).then(
        async () => (hashes = await read()),
        (e) => this.deps.log.warn("seeding seq counters from MySQL failed", { err: (e as Error).message }),
      );
    }
    const peers = list.map((c) => {
      const pc = parseConv(c);
      return pc?.kind === "dm" ? peerOf(pc, userId) : undefined;
    });
    const [readSeqs, names] = await Promise.all([
      this.deps.reads.get(
        userId,
        list,
        hashes.map((h) => h[3]),
      ),
      this.deps.names([...new Set(peers.filter((p) => p !== undefined))]),
    ]);
    const out = list.map((conv, i): ConversationSummary => {
      const [seq, ts] = hashes[i];
      const lastSeq = Number(seq) || 0;
      const c: ConversationSummary = { conv, lastSeq, lastTs: ts ? Number(ts) : null, readSeq: readSeqs[i], unread: Math.max(0, lastSeq - readSeqs[i]) };
      const peer = peers[i];
      if (peer !== undefined) c.peer = { userId: peer, userName: names.get(peer) ?? "" };
      return c;
    });
    return out.sort((a, b) => (b.lastTs ?? -1) - (a.lastTs ?? -1) || a.conv.localeCompare(b.conv));
  }

  /** members plus the user's conversations only MySQL knows, put back into Redis, the set then marked checked for epoch. */
  private async merge(userId: number, members: string[], epoch: string): Promise<string[]> {
    const { db, redis, keys } = this.deps;
    let rows: { conv: string }[];
    try {
      rows = await db.select({ conv: userConversations.conv }).from(userConversations).where(eq(userConversations.userId, userId));
    } catch (e) {
      this.deps.log.warn("conversation list from MySQL failed; Redis's alone", { err: (e as Error).message });
      return members;
    }
    const have = new Set(members);
    const lost = [...new Set(rows.map((r) => r.conv))].filter((c) => !have.has(c));
    const m = redis.multi();
    if (lost.length) m.sadd(keys.userConvs(userId), ...lost);
    await m.set(keys.userConvsChecked(userId), epoch).exec();
    return [...members, ...lost];
  }
}
