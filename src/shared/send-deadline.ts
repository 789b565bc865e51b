// The send deadline of api and connect (CONTRACT.md: a send is answered within 5 s, accepted or
// UNAVAILABLE, and a send answered UNAVAILABLE is never stored later). A batch of sends goes to
// logic with the time its oldest send has left (budgetMs); logic answers within it and its Redis
// script refuses to store anything once that time is up. Transport failures are retried on
// another lane while time is left (items carry a retryKey, so a retry cannot store twice).
import { AppError, fromGrpc } from "./errors.ts";
import type { Result } from "./batcher.ts";
import type { SendAck, SendReq } from "../../proto/logic.ts";

/** Kept back from the caller's budget for the reply's way back and the deadline sweep (ms). */
export const SEND_ANSWER_MARGIN_MS = 250;
/** Below this much time left, a send is not attempted at all. */
const MIN_BUDGET_MS = 300;
/** How much earlier than our own deadline logic must answer (ms): its reply's way back on a loaded box. */
const RETURN_TRIP_MS = 200;

type SendFn = (req: { items: SendReq[]; budgetMs?: number; answerBy?: number }, opts?: { deadlineMs?: number; retries?: number }) => Promise<Result<SendAck>[]>;

/**
 * A Batcher flush for sends: timeoutMs is the answer deadline counted from each item's start
 * (IM_SEND_TIMEOUT_MS). Never rejects: every item gets an ack or an error result.
 */
export function sendFlush(send: SendFn, timeoutMs: number) {
  return async (items: SendReq[], oldestAt: number): Promise<Result<SendAck>[]> => {
    const until = oldestAt + timeoutMs - SEND_ANSWER_MARGIN_MS;
    let last: AppError = new AppError("UNAVAILABLE", "no answer from the message store in time");
    for (let attempt = 0; ; attempt++) {
      const left = until - Date.now();
      if (left < MIN_BUDGET_MS) break;
      try {
        // budgetMs alone would end late by the time the call spends on the way (logic counts it from
        // arrival): on a loaded box, its script could then run after we answered UNAVAILABLE.
        // RETURN_TRIP_MS: logic's answer must get back before our own deadline fails the call, or
        // an acceptance would reach us too late and be answered UNAVAILABLE here, unreported.
        return await send({ items, budgetMs: left - RETURN_TRIP_MS, answerBy: until - RETURN_TRIP_MS }, { deadlineMs: left, retries: 0 });
      } catch (e) {
        last = fromGrpc(e);
        if (last.code !== "UNAVAILABLE") break;
        await Bun.sleep(Math.min(50 * (attempt + 1), Math.max(0, until - Date.now() - MIN_BUDGET_MS)));
      }
    }
    const err = last.toJSON();
    return items.map(() => ({ err }));
  };
}

/**
 * p, or UNAVAILABLE once timeoutMs - SEND_ANSWER_MARGIN_MS have passed since startedAt (for what
 * runs before a send is batched, e.g. the token check of an HTTP send). A send still queued then
 * is not sent (Batcher maxWaitMs); one in flight carries a budget that ends before this.
 */
export async function answerInTime<T>(p: Promise<T>, startedAt: number, timeoutMs: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, rej) => {
    timer = setTimeout(() => rej(new AppError("UNAVAILABLE", "no answer from the message store in time")), Math.max(0, startedAt + timeoutMs - SEND_ANSWER_MARGIN_MS - Date.now()));
  });
  try {
    return await Promise.race([p, late]);
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
