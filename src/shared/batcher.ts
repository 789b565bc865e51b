// Adaptive batching for hot-path RPCs: calls made while a batch is in flight (or within lingerMs
// of the first call, default: the same event-loop turn) go out together in the next batch. A busy
// batcher grows its batches by itself; lingerMs (1-2 ms) also batches a steady trickle, where each
// call would otherwise cost one RPC (~0.3 ms of CPU with grpc-js). With concurrency 1, batches (and so items) are delivered
// strictly in call order, which the send path relies on for per-connection seq order.
import { AppError, fromWire, type WireError } from "./errors.ts";

export type Result<T> = { ok: T; err?: undefined } | { ok?: undefined; err: WireError };

interface Pending<I, O> {
  item: I;
  /** When the caller's clock for this item started (ms since the epoch). */
  at: number;
  resolve: (o: O) => void;
  reject: (e: unknown) => void;
}

export class Batcher<I, O> {
  private queue: Pending<I, O>[] = [];
  private inFlight = 0;
  private scheduled = false;

  /**
   * flush gets the batch and each item's start time (the `at` of call(), ms since the epoch).
   * maxWaitMs: an item whose clock has run this long by the time its batch would go out is not
   * sent but rejected with UNAVAILABLE (a caller promised an answer within that time).
   */
  constructor(
    private readonly flush: (items: I[], ats: number[]) => Promise<Result<O>[]>,
    private readonly opts: { maxBatch?: number; concurrency?: number; lingerMs?: number; maxWaitMs?: number } = {},
  ) {}

  /** at: when this item's clock started (default now), for maxWaitMs. */
  call(item: I, at = Date.now()): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.queue.push({ item, at, resolve, reject });
      this.schedule();
    });
  }

  get queued(): number {
    return this.queue.length;
  }

  private schedule() {
    if (this.scheduled || this.inFlight >= (this.opts.concurrency ?? 1)) return;
    this.scheduled = true;
    const go = () => {
      this.scheduled = false;
      void this.run();
    };
    // Only the first item of an idle batcher lingers; a queue built up behind a batch in flight goes at once.
    if (this.opts.lingerMs && this.inFlight === 0) setTimeout(go, this.opts.lingerMs);
    else setImmediate(go);
  }

  private async run() {
    if (!this.queue.length || this.inFlight >= (this.opts.concurrency ?? 1)) return;
    let batch = this.queue.splice(0, this.opts.maxBatch ?? 512);
    const { maxWaitMs } = this.opts;
    if (maxWaitMs !== undefined) {
      const now = Date.now();
      const late = batch.filter((p) => now - p.at >= maxWaitMs);
      for (const p of late) p.reject(new AppError("UNAVAILABLE", "no answer from the message store in time"));
      if (late.length) batch = batch.filter((p) => now - p.at < maxWaitMs);
      if (!batch.length) {
        if (this.queue.length) this.schedule();
        return;
      }
    }
    this.inFlight++;
    try {
      const results = await this.flush(
        batch.map((p) => p.item),
        batch.map((p) => p.at),
      );
      batch.forEach((p, i) => {
        const r = results[i];
        if (!r) p.reject(new AppError("INTERNAL", "missing batch result"));
        else if (r.err) p.reject(fromWire(r.err));
        else p.resolve(r.ok as O);
      });
    } catch (e) {
      for (const p of batch) p.reject(e);
    } finally {
      this.inFlight--;
      if (this.queue.length) this.schedule();
    }
  }
}
