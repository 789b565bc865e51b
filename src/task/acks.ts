// How the stream consumers' XACKs reach Redis with few socket writes (each write wakes Redis, and
// the reply wakes us: ~50 µs of CPU on each side on a small VM).
import type { ChainableCommander, Redis } from "ioredis";
import type { Logger } from "../shared/log.ts";

/** Extra Redis commands to run in the same MULTI as the XACK. */
export type AckHook = (tx: ChainableCommander) => void;

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

interface Hooked {
  stream: string;
  group: string;
  ids: string[];
  hook: AckHook;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/**
 * Acks that carry a hook (the persist group's: XACK with the pending-zset trims of its batch, in
 * one MULTI). Those handed in during one event-loop turn (the batches of a round, which the persist
 * writer finishes together) go in one MULTI/EXEC, each batch's commands followed by its XACK,
 * instead of one transaction per partition. Each batch is answered for its own commands: a batch
 * none of whose commands failed resolves, even if another's did (MULTI/EXEC runs them all anyway);
 * an aborted transaction or a failed write rejects every batch in it.
 */
export class HookedAcks {
  private queue: Hooked[] = [];

  constructor(private readonly redis: Redis) {}

  /** Runs hook and XACK stream group ids in the next transaction; resolves once it has succeeded. */
  add(stream: string, group: string, ids: string[], hook: AckHook): Promise<void> {
    return new Promise((resolve, reject) => {
      if (!this.queue.length) setImmediate(() => void this.flush());
      this.queue.push({ stream, group, ids, hook, resolve, reject });
    });
  }

  private async flush(): Promise<void> {
    const batch = this.queue;
    this.queue = [];
    const tx = this.redis.multi();
    /** Per batch, its commands' [from, to) in the EXEC reply. */
    const spans: [number, number][] = [];
    try {
      for (const b of batch) {
        const from = queued(tx);
        b.hook(tx);
        tx.xack(b.stream, b.group, ...b.ids);
        spans.push([from, queued(tx)]);
      }
      const res = await tx.exec();
      if (!res) throw new Error("ack transaction aborted");
      batch.forEach((b, i) => {
        const err = res.slice(...spans[i]).find(([e]) => e)?.[0];
        if (err) b.reject(err);
        else b.resolve();
      });
    } catch (err) {
      for (const b of batch) b.reject(err);
    }
  }
}

/** Commands queued in a MULTI so far, not counting the MULTI itself: the index the next one's reply will have in EXEC's. */
const queued = (tx: ChainableCommander): number => (tx as unknown as { length: number }).length - 1;
