// Readiness of role processes: GET <opsUrl>/healthz answers 200.
import { waitUntil } from "../infra/wait.ts";
import type { Instance } from "./plan.ts";
import type { Supervised } from "./supervisor.ts";

/** A role that keeps crashing before it is ready will not get better by waiting. */
const MAX_EXITS_BEFORE_READY = 3;

export async function healthy(opsUrl: string): Promise<boolean> {
  try {
    const res = await fetch(`${opsUrl}/healthz`, { signal: AbortSignal.timeout(1000) });
    await res.arrayBuffer();
    return res.status === 200;
  } catch {
    return false; // not listening yet, or too slow to answer: try again
  }
}

/** Resolves once every instance is healthy; otherwise throws naming the first that is not, with its last output. */
export async function waitAllHealthy(
  members: { instance: Instance; proc: Supervised }[],
  opts: { timeoutMs: number; signal?: AbortSignal },
): Promise<void> {
  const results = await Promise.allSettled(
    members.map(({ instance, proc }) =>
      waitUntil(() => healthy(instance.opsUrl), {
        timeoutMs: opts.timeoutMs,
        intervalMs: 200,
        signal: opts.signal,
        giveUp: () => (proc.exits >= MAX_EXITS_BEFORE_READY ? `exited ${proc.exits} times before it was ready` : undefined),
      }),
    ),
  );
  opts.signal?.throwIfAborted();
  const failed = results.flatMap((r, i) => (r.status === "rejected" ? [{ ...members[i], err: r.reason as Error }] : []));
  if (!failed.length) return;
  const detail = failed.map(
    ({ instance, proc, err }) =>
      `${instance.name} (${instance.opsUrl}/healthz): ${err.message}; last output:\n${proc.tail() || "(none)"}`,
  );
  throw new Error(`${failed.length} role process(es) did not become ready:\n\n${detail.join("\n\n")}`);
}
