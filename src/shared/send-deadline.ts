// The send deadline of api and connect (CONTRACT.md: a send is answered within 5 s, accepted or
// UNAVAILABLE, and a send answered UNAVAILABLE is never stored later). One rule decides whether a
// send is still attempted, per send: it must have at least MIN_BUDGET_MS left before its answer is
// due (its start + timeout - SEND_ANSWER_MARGIN_MS); the Batcher's queue check and every attempt
// of the flush apply it (sendBatcher). A batch goes to logic with the time its oldest attempted
// send has left (budgetMs); logic answers within it and its Redis script refuses to store anything
// once that time is up. Transport failures are retried on another lane while time is left (items
// carry a retryKey, so a retry cannot store twice).
import { AppError, fromGrpc } from "./errors.ts";
import { Batcher, type Result } from "./batcher.ts";
import type { SendAck, SendReq } from "../../proto/logic.ts";

/** Kept back from the caller's budget for the reply's way back and the deadline sweep (ms). */
export const SEND_ANSWER_MARGIN_MS = 250;
/** Below this much time left before its answer is due, a send is not attempted (again). */
export const MIN_BUDGET_MS = 300;
/** How much earlier than our own deadline logic must answer (ms): its reply's way back on a loaded box. */
const RETURN_TRIP_MS = 200;

type SendFn = (req: { items: SendReq[]; budgetMs?: number; answerBy?: number }, opts?: { deadlineMs?: number; retries?: number }) => Promise<Result<SendAck>[]>;

const late = () => new AppError("UNAVAILABLE", "no answer from the message store in time");

/**
 * A Batcher flush for sends: timeoutMs is the answer deadline counted from each item's start
 * (IM_SEND_TIMEOUT_MS), ats the items' starts (ms since the epoch). Before every attempt, each
 * send with less than MIN_BUDGET_MS left is answered UNAVAILABLE alone; the others go, with the
 * budget of the oldest of them. Never rejects: every item gets an ack or an error result.
 */
export function sendFlush(send: SendFn, timeoutMs: number) {
  return async (items: SendReq[], ats: readonly number[]): Promise<Result<SendAck>[]> => {
    const out: Result<SendAck>[] = new Array(items.length);
    const dueAt = ats.map((at) => at + timeoutMs - SEND_ANSWER_MARGIN_MS);
    let todo = items.map((_, i) => i);
    // The last transport error, or (made only when needed) the deadline's own UNAVAILABLE.
    let last: AppError | undefined;
    for (let attempt = 0; ; attempt++) {
      const now = Date.now();
      const expired = todo.filter((i) => dueAt[i] - now < MIN_BUDGET_MS);
      if (expired.length) {
        const err = (last ?? late()).toJSON();
        for (const i of expired) out[i] = { err };
        todo = todo.filter((i) => dueAt[i] - now >= MIN_BUDGET_MS);
      }
      if (!todo.length) return out;
      let until = Infinity;
      for (const i of todo) until = Math.min(until, dueAt[i]);
      const left = until - now;
      try {
        // budgetMs alone would end late by the time the call spends on the way (logic counts it from
        // arrival): on a loaded box, its script could then run after we answered UNAVAILABLE.
        // RETURN_TRIP_MS: logic's answer must get back before our own deadline fails the call, or
        // an acceptance would reach us too late and be answered UNAVAILABLE here, unreported.
        const res = await send({ items: todo.map((i) => items[i]), budgetMs: left - RETURN_TRIP_MS, answerBy: until - RETURN_TRIP_MS }, { deadlineMs: left, retries: 0 });
        todo.forEach((i, k) => (out[i] = res[k]));
        return out;
      } catch (e) {
        last = fromGrpc(e);
        if (last.code !== "UNAVAILABLE") {
          const err = last.toJSON();
          for (const i of todo) out[i] = { err };
          return out;
        }
        await Bun.sleep(Math.min(50 * (attempt + 1), Math.max(0, until - Date.now() - MIN_BUDGET_MS)));
      }
    }
  };
}

/**
 * The Batcher api and connect send through: sendFlush with the queue check of the same rule (a
 * send still queued with less than MIN_BUDGET_MS left is answered UNAVAILABLE unsent).
 * opts: the Batcher's concurrency, lingerMs and maxBatch.
 */
export function sendBatcher(send: SendFn, timeoutMs: number, opts: { concurrency?: number; lingerMs?: number; maxBatch?: number } = {}): Batcher<SendReq, SendAck> {
  return new Batcher(sendFlush(send, timeoutMs), { ...opts, maxWaitMs: timeoutMs - SEND_ANSWER_MARGIN_MS - MIN_BUDGET_MS });
}

/**
 * p, or UNAVAILABLE once timeoutMs - SEND_ANSWER_MARGIN_MS have passed since startedAt (for what
 * runs before a send is batched, e.g. the token check of an HTTP send). A send still queued then
 * is not sent (Batcher maxWaitMs); one in flight carries a budget that ends before this.
 */
export async function answerInTime<T>(p: Promise<T>, startedAt: number, timeoutMs: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, rej) => {
    timer = setTimeout(() => rej(late()), Math.max(0, startedAt + timeoutMs - SEND_ANSWER_MARGIN_MS - Date.now()));
  });
  try {
    return await Promise.race([p, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Logic's side: how long (ms, >= 0) it may take to answer a send call that arrived at `now`:
 * budgetMs (counted from arrival; default and cap sendTimeoutMs), but never past the caller's
 * absolute answerBy (ms since the epoch), which does not grow with the time the call was on the way.
 * Non-finite or non-positive budgetMs means none given; a non-finite answerBy is ignored.
 */
export function answerBudgetMs(req: { budgetMs?: number; answerBy?: number }, now: number, sendTimeoutMs: number): number {
  const b = req.budgetMs;
  let budget = Number.isFinite(b) && (b as number) > 0 ? Math.min(b as number, sendTimeoutMs) : sendTimeoutMs;
  if (Number.isFinite(req.answerBy)) budget = Math.max(0, Math.min(budget, (req.answerBy as number) - now));
  return budget;
}
