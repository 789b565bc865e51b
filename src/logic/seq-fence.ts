// The seq fence (README "Redis losing its tail"): a conversation's seq counter is trusted only
// once the current Redis server in its current role (its EPOCH, scripts.ts: run_id and
// master_replid) has checked it against MySQL's highest seq.
// The send script refuses unchecked conversations ("S"); this seeds them.
import { inArray, max } from "drizzle-orm";
import type Redis from "ioredis";
import type { Db } from "../shared/db/index.ts";
import { messages } from "../shared/db/schema.ts";
import type { Keys } from "../shared/keys.ts";
import type { Scripts } from "./scripts.ts";

export class SeqFence {
  /** Counters raised to MySQL's highest seq (Redis had lost their tail), for a metric. */
  raised = 0;
  private cachedEpoch?: string;

  constructor(private readonly deps: { db: Db; redis: Redis & Scripts; keys: Keys }) {}

  /**
   * Checks conversations' counters against MySQL (highest seq and ts per conversation, one
   * query) and marks them checked for the current Redis server process (SEED_CONVS). Throws when
   * MySQL or Redis fails; then nothing is accepted in those conversations.
   */
  async seed(convList: string[]): Promise<void> {
    if (!convList.length) return;
    const { db, redis, keys } = this.deps;
    const rows = await db
      .select({ conv: messages.conv, seq: max(messages.seq), ts: max(messages.ts) })
      .from(messages)
      .where(inArray(messages.conv, convList))
      .groupBy(messages.conv);
    const top = new Map(rows.map((r) => [r.conv, r]));
    const argv: (string | number)[] = [];
    for (const c of convList) {
      const r = top.get(c);
      argv.push(keys.conv(c), Number(r?.seq ?? 0), r?.ts == null ? "" : String(r.ts));
    }
    this.raised += await redis.imSeedConvs(...argv);
  }

  /**
   * The current Redis server's EPOCH (the "ep" a checked counter carries, "<run_id>:<replid>");
   * cached until forget().
   */
  async epoch(): Promise<string> {
    if (this.cachedEpoch) return this.cachedEpoch;
    const id = await this.deps.redis.imEpoch();
    this.cachedEpoch = id;
    return id;
  }

  /**
   * True if a counter whose "ep" is `ep` was checked by the current Redis server. A mismatch with
   * the cached epoch is read again once (the server may have been promoted on the same
   * connection), so a stale cache costs one INFO, not a MySQL query per read.
   */
  async checked(ep: string | null): Promise<boolean> {
    if (ep === (await this.epoch())) return true;
    this.forget();
    return ep === (await this.epoch());
  }

  /** Call on every (re)connection to Redis: the server may be another process now. */
  forget(): void {
    this.cachedEpoch = undefined;
  }
}
