// Stream mechanics, apart from what is done with the entries (Centrifugo style). One consumer reads
// one partition stream for one group. It runs only while this worker owns the partition exclusively,
// so on start it claims every pending entry of other consumers (dead or former owners) and replays
// its own pending list before reading new entries. Entries are acked only after the handler
// succeeded; a failing batch stays pending and is retried with backoff, in stream order.
import type { ChainableCommander, Redis } from "ioredis";
import type { Logger } from "../shared/log.ts";
import { entryFields } from "../shared/stream.ts";

export interface StreamEntry {
  id: string;
  /** Field d: the packed StreamEvent. */
  d: Buffer;
  /** Field n: seq for messages, onlineCount for presence events. */
  n: number;
}

/** Extra Redis commands to run in the same MULTI as the XACK. */
export type AckHook = (tx: ChainableCommander) => void;

/** Handles a batch in stream order; throws to leave the whole batch pending for a retry. */
export type BatchHandler = (entries: StreamEntry[], signal: AbortSignal) => Promise<AckHook | void>;

export interface ConsumerOptions {
  /** Ordinary connection for group setup, claims and acks (may be shared). */
  redis: Redis;
  /** Dedicated connection for the blocking reads; the consumer disconnects it on stop. */
  blocking: Redis;
  stream: string;
  group: string;
  consumer: string;
  handler: BatchHandler;
  log: Logger;
  /** Entries per read (default 500). */
  count?: number;
  /** XREADGROUP BLOCK in ms (default 1000): stop() returns within about this long plus the batch in flight. */
  blockMs?: number;
  /**
   * After a batch smaller than count, wait this long before reading again, so a trickle is handled
   * in fewer, larger batches (default 0). For work where latency matters little (persist).
   */
  lingerMs?: number;
  /** Retry backoff in ms after a failure, doubling from min to max (default 200 → 5000). */
  backoffMinMs?: number;
  backoffMaxMs?: number;
  /** Where acks without a hook go (default: a buffer of this consumer's own on `redis`). */
  acks?: AckBuffer;
}

type ReadReply = [key: Buffer, items: [id: Buffer, fields: Buffer[] | null][]][] | null;

export class StreamConsumer {
  private readonly abort = new AbortController();
  private loop?: Promise<void>;
  private blockingRead = false;
  /** Set when the blocking connection dropped or a background ack failed: see run(). */
  private resync = false;
  private readonly acks: AckBuffer;
  private readonly log: Logger;

  constructor(private readonly o: ConsumerOptions) {
    this.log = o.log.child({ stream: o.stream, group: o.group });
    this.acks = o.acks ?? new AckBuffer(o.redis, this.log);
    o.blocking.on("close", () => {
      this.resync = true;
    });
  }

  start(): void {
    this.loop ??= this.run();
  }

  /**
   * Stops reading and waits for the batch in flight. A blocking read in progress is cut by closing
   * its connection: whatever it had delivered stays pending, for the next owner to claim.
   */
  async stop(): Promise<void> {
    this.abort.abort();
    if (this.blockingRead) this.o.blocking.disconnect();
    await this.loop;
    await this.acks.flush();
    this.o.blocking.disconnect();
  }

  private get stopped(): boolean {
    return this.abort.signal.aborted;
  }

  private async run(): Promise<void> {
    const min = this.o.backoffMinMs ?? 200;
    const max = this.o.backoffMaxMs ?? 5000;
    let delay = min;
    let failures = 0;
    let ready = false;
    // "0": replaying our own pending list from the start; an id: paging through it; ">": new entries.
    let cursor = "0";
    while (!this.stopped) {
      try {
        if (!ready) {
          await this.setup();
          ready = true;
          cursor = "0";
        }
        const entries = await this.read(cursor);
        if (this.stopped) break;
        // ioredis resends a read cut by a dropped connection. The lost reply may have delivered
        // entries to our pending list: re-read it from the start, or they would be overtaken.
        if (this.resync) {
          this.resync = false;
          cursor = "0";
          continue;
        }
        if (!entries) {
          if (cursor !== ">") cursor = ">";
          continue;
        }
        await this.process(entries);
        if (cursor !== ">") cursor = entries.ids[entries.ids.length - 1];
        else if (this.o.lingerMs && entries.ids.length < (this.o.count ?? 500)) await sleep(this.o.lingerMs, this.abort.signal);
        if (failures) this.log.info("stream consumer recovered", { failures });
        failures = 0;
        delay = min;
      } catch (err) {
        if (this.stopped) break;
        if (String((err as Error)?.message).includes("NOGROUP")) ready = false;
        // The first failure of a streak at warn, the retries at debug: an outage logs once, not every 5 s.
        if (failures++ === 0) this.log.warn("stream batch failed, retrying with backoff", { err, retryMs: delay });
        else this.log.debug("stream batch failed again", { err: (err as Error)?.message, failures, retryMs: delay });
        cursor = "0";
        await sleep(delay, this.abort.signal);
        delay = Math.min(delay * 2, max);
      }
    }
  }

  /** Creates the group if missing and takes over every pending entry of other consumers. */
  private async setup(): Promise<void> {
    const { redis, stream, group, consumer } = this.o;
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
    } while (start !== "0-0" && !this.stopped);
    if (claimed) this.log.info("claimed pending entries", { claimed });
    // Every former owner left a consumer name in the group; drop those with nothing pending.
    const consumers = (await redis.xinfo("CONSUMERS", stream, group)) as unknown[][];
    for (const c of consumers) {
      const name = String(c[c.indexOf("name") + 1]);
      if (name !== consumer && Number(c[c.indexOf("pending") + 1]) === 0) await redis.xgroup("DELCONSUMER", stream, group, name);
    }
  }

  private async read(cursor: string): Promise<{ ids: string[]; entries: StreamEntry[] } | null> {
    const { blocking, stream, group, consumer } = this.o;
    const count = this.o.count ?? 500;
    let reply: ReadReply;
    if (cursor === ">") {
      this.blockingRead = true;
      try {
        reply = (await blocking.xreadgroupBuffer("GROUP", group, consumer, "COUNT", count, "BLOCK", this.o.blockMs ?? 1000, "STREAMS", stream, ">")) as ReadReply;
      } finally {
        this.blockingRead = false;
      }
    } else {
      // A replay must not see entries whose ack is still on its way.
      await this.acks.flush();
      reply = (await blocking.xreadgroupBuffer("GROUP", group, consumer, "COUNT", count, "STREAMS", stream, cursor)) as ReadReply;
    }
    const items = reply?.[0]?.[1];
    if (!items?.length) return null;
    const ids: string[] = [];
    const entries: StreamEntry[] = [];
    for (const [rawId, fields] of items) {
      const id = rawId.toString();
      ids.push(id);
      // Null fields: the entry was trimmed while pending. Nothing to do but ack it.
      if (!fields) continue;
      const { d, n } = entryFields(fields);
      if (d) entries.push({ id, d, n });
      else this.log.warn("dropping stream entry without field d", { id });
    }
    return { ids, entries };
  }

  private async process(batch: { ids: string[]; entries: StreamEntry[] }): Promise<void> {
    const hook = batch.entries.length ? await this.o.handler(batch.entries, this.abort.signal) : undefined;
    if (!hook) {
      this.acks.add(this.o.stream, this.o.group, batch.ids, () => {
        this.log.warn("ack failed, replaying the pending list");
        this.resync = true;
      });
      return;
    }
    const tx = this.o.redis.multi();
    hook(tx);
    tx.xack(this.o.stream, this.o.group, ...batch.ids);
    const res = await tx.exec();
    const failed = res?.find(([e]) => e);
    if (!res || failed) throw failed?.[0] ?? new Error("ack transaction aborted");
    this.log.debug("batch acked", { entries: batch.ids.length, first: batch.ids[0] });
  }
}

/** How long acks wait for company before going to Redis. */
const ACK_DELAY_MS = 20;

/**
 * Acks of batches without a hook (the push group's), gathered for up to ACK_DELAY_MS and sent as
 * one pipeline (one socket write) for every stream and group that shares the buffer, instead of
 * an XACK per batch and partition: the next read goes out at once, and Redis gets a few acks a
 * second per worker rather than one per batch. Acks run in order on the connection; a consumer
 * replaying its pending list or stopping calls flush() first, so it never sees an entry it handled
 * as still pending. An entry whose ack is lost (the process dies within ACK_DELAY_MS, or the
 * pipeline fails) is still pending and is handled again: after a crash, as the contract allows;
 * after a failed pipeline, the consumer is told and replays its pending list.
 */
export class AckBuffer {
  private pending = new Map<string, { stream: string; group: string; ids: string[]; onFail: () => void }>();
  private timer?: ReturnType<typeof setTimeout>;
  private sent: Promise<void> = Promise.resolve();

  constructor(
    private readonly redis: Redis,
    private readonly log: Logger,
  ) {}

  add(stream: string, group: string, ids: string[], onFail: () => void): void {
    const key = `${stream}\n${group}`;
    const p = this.pending.get(key);
    if (p) {
      for (const id of ids) p.ids.push(id);
      p.onFail = onFail;
    } else this.pending.set(key, { stream, group, ids: [...ids], onFail });
    this.timer ??= setTimeout(() => void this.flush(), ACK_DELAY_MS);
  }

  /** Sends what is gathered; resolves once every ack added so far has been answered. */
  flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    const batch = [...this.pending.values()];
    if (!batch.length) return this.sent;
    this.pending.clear();
    const pipe = this.redis.pipeline();
    for (const b of batch) pipe.xack(b.stream, b.group, ...b.ids);
    const failed = (err: unknown, b: (typeof batch)[number]) => {
      this.log.debug("ack failed", { stream: b.stream, group: b.group, err: (err as Error)?.message });
      b.onFail();
    };
    this.sent = pipe.exec().then(
      (res) => batch.forEach((b, i) => (!res || res[i][0]) && failed(res?.[i][0] ?? "aborted", b)),
      (err) => batch.forEach((b) => failed(err, b)),
    );
    return this.sent;
  }
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
