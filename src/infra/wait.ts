// Polling until a probe succeeds: used for "is the server answering yet?".

export interface WaitOptions {
  timeoutMs: number;
  /** Pause between probes; default 100 ms. */
  intervalMs?: number;
  /** Stops the wait with an AbortError. */
  signal?: AbortSignal;
  /** Returns a reason when waiting longer is pointless (e.g. the process exited). */
  giveUp?: () => string | undefined;
}

export class WaitError extends Error {}

/** Resolves once probe() returns true; throws WaitError on timeout or giveUp, AbortError on abort. */
export async function waitUntil(probe: () => Promise<boolean>, opts: WaitOptions): Promise<void> {
  const deadline = Date.now() + opts.timeoutMs;
  for (;;) {
    opts.signal?.throwIfAborted();
    const reason = opts.giveUp?.();
    if (reason) throw new WaitError(reason);
    if (await probe()) return;
    if (Date.now() >= deadline) throw new WaitError(`not ready after ${Math.round(opts.timeoutMs / 1000)} s`);
    await Bun.sleep(opts.intervalMs ?? 100);
  }
}
