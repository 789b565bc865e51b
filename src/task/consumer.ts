// Stream mechanics, apart from what is done with the entries (Centrifugo style). One consumer reads
// every partition stream this worker owns, for one group, with one XREADGROUP per round: a round
// costs about the same for 1 entry as for 50, so P partitions read by one loop cost about 1/P of
// P loops (bench/task-steady.ts). Each stream is added while this worker owns the partition
// exclusively, so on adding it claims every pending entry of other consumers (dead or former
// owners) and replays its own pending list before reading new entries. Entries are acked only
// after the stream's handler succeeded; a failing batch stays pending and that stream is retried
// with backoff, in stream order, while the others go on. The batches of a round are handled
// together; one that takes longer than ROUND_WAIT_MS (a push retrying a failing connect instance)
// finishes on its own while the other streams are read on, and its stream rejoins afterwards.
import type { Redis } from "ioredis";
import type { Logger } from "../shared/log.ts";
import { entryFields } from "../shared/stream.ts";
import { AckBuffer, HookedAcks, type AckHook } from "./acks.ts";

export interface StreamEntry {
  id: string;
  /** Field d: the packed StreamEvent. */
  d: Buffer;
  /** Field n: seq for messages, onlineCount for presence events. */
  n: number;
}

/** Handles a batch in stream order; throws to leave the whole batch pending for a retry. */
export type BatchHandler = (entries: StreamEntry[], signal: AbortSignal) => Promise<AckHook | void>;

export interface ConsumerOptions {
  /** Ordinary connection for group setup, claims and acks (may be shared). */
  redis: Redis;
  /** Dedicated connection for the blocking reads; the consumer disconnects it on stop. */
  blocking: Redis;
  group: string;
  consumer: string;
  log: Logger;
  /** Entries per read and stream (default 500). */
  count?: number;
  /** XREADGROUP BLOCK in ms (default 200): an added or removed stream waits at most this long for the read in progress. */
  blockMs?: number;
  /**
   * After a round whose batches were all smaller than count, wait this long before reading again,
   * so a trickle is handled in fewer, larger batches (default 0). For work where latency matters
   * little (persist).
   */
  lingerMs?: number;
  /**
   * Reads at most every intervalMs (default 0): after a round that handled entries and began less
   * than intervalMs ago, wait out the rest before reading again. Unlike lingerMs it costs nothing
   * when entries come less often than that (the next read blocks until one comes); under a
   * steady flow it caps reads, and the round trips and calls each read brings, at 1000/intervalMs
   * a second, at up to intervalMs of added delay. For push (IM_PUSH_INTERVAL_MS).
   */
  intervalMs?: number;
  /** Retry backoff in ms after a failure, doubling from min to max (default 200 → 5000). */
  backoffMinMs?: number;
  backoffMaxMs?: number;
  /** Where acks without a hook go (default: a buffer of this consumer's own on `redis`). */
  acks?: AckBuffer;
  /** Where acks with a hook go (default: one of this consumer's own on `redis`). */
  hookedAcks?: HookedAcks;
}

type ReadReply = [key: Buffer, items: [id: Buffer, fields: Buffer[] | null][]][] | null;

interface Owned {
  stream: string;
  handler: BatchHandler;
  /** Aborted when the stream is removed or the consumer stops: handlers stop retrying. */
  abort: AbortController;
  /** Group created and other consumers' pending entries claimed. */
  ready: boolean;
  /** "0": replaying our own pending list from the start; an id: paging through it; ">": new entries. */
  cursor: string;
  failures: number;
  delay: number;
  /** Not read before this time (ms epoch): backing off after a failure. */
  retryAt: number;
  /** Settles when what is in progress of the stream (its part of a read, or its batch) is done. */
  work?: Promise<void>;
  /** Its batch in progress, if any: the stream is not read meanwhile. */
  busy?: Promise<void>;
}

interface Batch {
  owned: Owned;
  /** The cursor the batch was read at: "0" or an id when replaying, ">" for new entries. */
  cursor: string;
  ids: string[];
  entries: StreamEntry[];
}

export class StreamConsumer {
  private readonly abort = new AbortController();
  private readonly owned = new Map<string, Owned>();
  /** Batches being handled. */
  private readonly inFlight = new Set<Promise<void>>();
  private loop?: Promise<void>;
  private blockingRead = false;
  /** Set when the blocking connection dropped or an ack failed: every stream replays its pending list. */
  private resync = false;
  /** Wakes a loop that waits with nothing to read. */
  private wake?: () => void;
  private readonly acks: AckBuffer;
  private readonly hooked: HookedAcks;
  private readonly log: Logger;

  constructor(private readonly o: ConsumerOptions) {
    this.log = o.log.child({ group: o.group });
    this.acks = o.acks ?? new AckBuffer(o.redis, this.log);
    this.hooked = o.hookedAcks ?? new HookedAcks(o.redis);
    o.blocking.on("close", () => {
      this.resync = true;
    });
  }

  /** Starts reading stream (this worker now owns it exclusively) with its handler. */
  add(stream: string, handler: BatchHandler): void {
    if (this.stopped) return;
    this.owned.set(stream, { stream, handler, abort: new AbortController(), ready: false, cursor: "0", failures: 0, delay: this.minDelay, retryAt: 0 });
    this.wake?.();
    this.loop ??= this.run();
  }

  /**
   * Stops reading stream and waits until no read or batch of it is in progress and its acks are
   * on Redis; whatever it has pending stays pending, for the next owner to claim.
   */
  async remove(stream: string): Promise<void> {
    const o = this.owned.get(stream);
    if (!o) return;
    o.abort.abort();
    this.owned.delete(stream);
    // Its read may hand it a batch: then wait for that too.
    for (let w = o.work; w; w = o.work === w ? undefined : o.work) await w;
    await this.acks.flush();
  }

  /**
   * Stops reading and waits for the round in flight. A blocking read in progress is cut by closing
   * its connection: whatever it had delivered stays pending, for the next owner to claim.
   */
  async stop(): Promise<void> {
    this.abort.abort();
    for (const o of this.owned.values()) o.abort.abort();
    this.wake?.();
    if (this.blockingRead) this.o.blocking.disconnect();
    await this.loop;
    await Promise.all(this.inFlight);
    await this.acks.flush();
    this.o.blocking.disconnect();
  }

  private get stopped(): boolean {
    return this.abort.signal.aborted;
  }

  private get minDelay(): number {
    return this.o.backoffMinMs ?? 200;
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const now = Date.now();
      const idle = [...this.owned.values()].filter((o) => !o.busy);
      const due = idle.filter((o) => o.retryAt <= now);
      if (!due.length) {
        const next = Math.min(...idle.map((o) => o.retryAt));
        await this.idle(Number.isFinite(next) ? Math.max(1, next - now) : this.o.blockMs ?? 200);
        continue;
      }
      // remove() waits for what is in progress of a stream: its setup and the read, then its batch.
      const reading = new Map<Owned, () => void>();
      for (const o of due) {
        const { promise, resolve } = Promise.withResolvers<void>();
        o.work = promise;
        reading.set(o, resolve);
      }
      let batches: Batch[] = [];
      try {
        batches = await this.round(due, now);
      } finally {
        for (const b of batches) this.start(b);
        for (const resolve of reading.values()) resolve();
      }
      // Normally every batch is done in a few ms and the next round reads all streams again; one
      // that takes longer (a push retrying a failing connect instance) is left to finish on its
      // own, and the other streams go on without it.
      if (batches.length) await settledWithin(Promise.all(batches.map((b) => b.owned.busy)), ROUND_WAIT_MS);
      const full = batches.some((b) => b.ids.length >= (this.o.count ?? 500));
      if (this.o.lingerMs && !full) await sleep(this.o.lingerMs, this.abort.signal);
      else if (this.o.intervalMs && batches.length && !full) {
        const rest = now + this.o.intervalMs - Date.now();
        if (rest > 0) await sleep(rest, this.abort.signal);
      }
    }
  }

  /** Setup where needed, then one read of the due streams; the batches to handle. */
  private async round(due: Owned[], now: number): Promise<Batch[]> {
    for (const o of due) if (!o.ready && this.owned.has(o.stream)) await this.setup(o);
    const ready = due.filter((o) => o.ready && this.owned.has(o.stream));
    if (!ready.length) return [];
    let batches: Batch[];
    try {
      batches = await this.read(ready, now);
    } catch (err) {
      if (this.stopped) return [];
      if (String((err as Error)?.message).includes("NOGROUP")) for (const o of ready) o.ready = false;
      for (const o of ready) this.failed(o, err);
      return [];
    }
    if (this.stopped) return [];
    // ioredis resends a read cut by a dropped connection. The lost reply may have delivered
    // entries to our pending lists: re-read them from the start, or they would be overtaken.
    if (this.resync) {
      this.resync = false;
      for (const o of this.owned.values()) o.cursor = "0";
      return [];
    }
    return batches;
  }

  /** Handles a batch in the background; the stream is not read again until it is done. */
  private start(b: Batch): void {
    const o = b.owned;
    const work = this.handle(b).finally(() => {
      o.busy = undefined;
      this.inFlight.delete(work);
      this.wake?.();
    });
    o.busy = work;
    o.work = work;
    this.inFlight.add(work);
  }

  /**
   * Runs the stream's handler on the batch and acks it: through the ack buffer, or with the
   * handler's hook in one transaction (shared with the other streams' batches of the same turn,
   * see HookedAcks). A failure backs the stream off.
   */
  private async handle(b: Batch): Promise<void> {
    const o = b.owned;
    try {
      const hook = b.entries.length ? await o.handler(b.entries, o.abort.signal) : undefined;
      if (hook) await this.hooked.add(o.stream, this.o.group, b.ids, hook);
      else {
        this.acks.add(o.stream, this.o.group, b.ids, () => {
          this.log.warn("ack failed, replaying the pending lists");
          this.resync = true;
        });
      }
      this.succeeded(b);
    } catch (err) {
      this.failed(o, err);
    }
  }

  /** Waits up to ms, or until a stream is added or removed, or the consumer stops. */
  private async idle(ms: number): Promise<void> {
    await new Promise<void>((res) => {
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        res();
      }
      this.wake = done;
    });
    this.wake = undefined;
  }

  /** Creates the group if missing and takes over every pending entry of other consumers. */
  private async setup(o: Owned): Promise<void> {
    const { redis, group, consumer } = this.o;
    const { stream } = o;
    try {
      try {
        await redis.xgroup("CREATE", stream, group, "0", "MKSTREAM");
      } catch (err) {
        if (!String((err as Error)?.message).includes("BUSYGROUP")) throw err;
      }
      // Safe with min-idle 0 only because this worker owns the partition exclusively.
      let start = "0-0";
      let claimed = 0;
      do {
        const reply = (await redis.xautoclaim(stream, group, consumer, 0, start, "COUNT", 1000, "JUSTID")) as [string, string[]];
        start = reply[0];
        claimed += reply[1].length;
      } while (start !== "0-0" && !o.abort.signal.aborted);
      if (claimed) this.log.info("claimed pending entries", { stream, claimed });
      // Every former owner left a consumer name in the group; drop those with nothing pending.
      const consumers = (await redis.xinfo("CONSUMERS", stream, group)) as unknown[][];
      for (const c of consumers) {
        const name = String(c[c.indexOf("name") + 1]);
        if (name !== consumer && Number(c[c.indexOf("pending") + 1]) === 0) await redis.xgroup("DELCONSUMER", stream, group, name);
      }
      o.ready = true;
      o.cursor = "0";
    } catch (err) {
      this.failed(o, err);
    }
  }

  /**
   * One XREADGROUP: the streams replaying their pending lists at their cursors (no blocking), or
   * else every stream's new entries, blocking up to blockMs (less if a backoff ends sooner).
   */
  private async read(ready: Owned[], now: number): Promise<Batch[]> {
    const { blocking, group, consumer } = this.o;
    const count = this.o.count ?? 500;
    const replaying = ready.filter((o) => o.cursor !== ">");
    let reply: ReadReply;
    if (replaying.length) {
      // A replay must not see entries whose ack is still on its way.
      await this.acks.flush();
      const args = [...replaying.map((o) => o.stream), ...replaying.map((o) => o.cursor)];
      reply = (await blocking.xreadgroupBuffer("GROUP", group, consumer, "COUNT", count, "STREAMS", ...args)) as ReadReply;
      // A stream whose pending list is exhausted reads new entries from now on.
      const got = new Set((reply ?? []).filter(([, items]) => items.length).map(([key]) => key.toString()));
      for (const o of replaying) if (!got.has(o.stream)) o.cursor = ">";
    } else {
      const backingOff = [...this.owned.values()].filter((o) => o.retryAt > now).map((o) => o.retryAt - now);
      const block = Math.max(1, Math.min(this.o.blockMs ?? 200, ...backingOff));
      const args = [...ready.map((o) => o.stream), ...ready.map(() => ">")];
      this.blockingRead = true;
      try {
        reply = (await blocking.xreadgroupBuffer("GROUP", group, consumer, "COUNT", count, "BLOCK", block, "STREAMS", ...args)) as ReadReply;
      } finally {
        this.blockingRead = false;
      }
    }
    const batches: Batch[] = [];
    for (const [key, items] of reply ?? []) {
      const owned = this.owned.get(key.toString());
      if (!owned || !items.length) continue;
      const ids: string[] = [];
      const entries: StreamEntry[] = [];
      for (const [rawId, fields] of items) {
        const id = rawId.toString();
        ids.push(id);
        // Null fields: the entry was trimmed while pending. Nothing to do but ack it.
        if (!fields) continue;
        const { d, n } = entryFields(fields);
        if (d) entries.push({ id, d, n });
        else this.log.warn("dropping stream entry without field d", { stream: owned.stream, id });
      }
      batches.push({ owned, cursor: owned.cursor, ids, entries });
    }
    return batches;
  }

  private succeeded(b: Batch): void {
    const o = b.owned;
    // A replay pages on from the batch, unless a resync sent the stream back to "0" meanwhile
    // (the batch may have been in flight when an ack failed or the connection dropped).
    if (o.cursor !== ">" && o.cursor === b.cursor) o.cursor = b.ids[b.ids.length - 1];
    if (o.failures) this.log.info("stream consumer recovered", { stream: o.stream, failures: o.failures });
    o.failures = 0;
    o.delay = this.minDelay;
  }

  /** Leaves the stream's batch pending: replayed from the start of its pending list after a backoff. */
  private failed(o: Owned, err: unknown): void {
    if (this.stopped || o.abort.signal.aborted) return;
    // The first failure of a streak at warn, the retries at debug: an outage logs once, not every 5 s.
    if (o.failures++ === 0) this.log.warn("stream batch failed, retrying with backoff", { stream: o.stream, err, retryMs: o.delay });
    else this.log.debug("stream batch failed again", { stream: o.stream, err: (err as Error)?.message, failures: o.failures, retryMs: o.delay });
    o.cursor = "0";
    o.retryAt = Date.now() + o.delay;
    o.delay = Math.min(o.delay * 2, this.o.backoffMaxMs ?? 5000);
  }
}

/** How long a round waits for its slowest batch before reading the other streams again. */
const ROUND_WAIT_MS = 100;

/** Resolves when p settles or after ms, whichever is first (the timer is cleared either way). */
async function settledWithin(p: Promise<unknown>, ms: number): Promise<void> {
  let t: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([p.then(() => undefined, () => undefined), new Promise<void>((res) => (t = setTimeout(res, ms)))]);
  clearTimeout(t);
}

/** Orders stream ids ("ms-seq"): negative, zero or positive like a comparator. */
export function compareIds(a: string, b: string): number {
  const [am, as] = a.split("-");
  const [bm, bs] = b.split("-");
  const d = BigInt(am) - BigInt(bm) || BigInt(as ?? 0) - BigInt(bs ?? 0);
  return d < 0n ? -1 : d > 0n ? 1 : 0;
}

/** Resolves after ms, or at once when the signal aborts (a stop must not wait out a backoff). */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((res) => {
    const done = () => {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      res();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
