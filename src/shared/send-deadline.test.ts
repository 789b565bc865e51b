import { describe, expect, test } from "bun:test";
import { AppError } from "./errors.ts";
import { Batcher } from "./batcher.ts";
import { answerBudgetMs, answerInTime, MIN_BUDGET_MS, sendBatcher, sendFlush, SEND_ANSWER_MARGIN_MS } from "./send-deadline.ts";
import type { SendReq } from "../../proto/logic.ts";

const item = (body: string): SendReq => ({ from: { userId: 1, userName: "u1" }, room: "r", body, retryKey: body });

describe("sendFlush", () => {
  test("passes the time the oldest send has left as budgetMs and as the call's deadline", async () => {
    const seen: { budgetMs?: number; deadlineMs?: number; answerBy?: number }[] = [];
    const flush = sendFlush(async (req, opts) => {
      seen.push({ budgetMs: req.budgetMs, deadlineMs: opts?.deadlineMs, answerBy: req.answerBy });
      return req.items.map((r, i) => ({ ok: { id: String(i), conv: "room:r", seq: i + 1, ts: 1 } }));
    }, 5000);
    const oldestAt = Date.now() - 1000;
    const res = await flush([item("a"), item("b")], [oldestAt, oldestAt + 500]);
    expect(res.map((r) => r.ok?.seq)).toEqual([1, 2]);
    expect(seen[0].deadlineMs!).toBeLessThanOrEqual(4000 - SEND_ANSWER_MARGIN_MS);
    expect(seen[0].deadlineMs!).toBeGreaterThan(3000);
    expect(seen[0].budgetMs!).toBeLessThan(seen[0].deadlineMs!);
    // The same end as an absolute time, so time on the way to logic cannot extend it.
    expect(seen[0].answerBy!).toBeLessThan(oldestAt + 5000 - SEND_ANSWER_MARGIN_MS);
  });

  test("retries transport failures only while time is left, then answers UNAVAILABLE for every item", async () => {
    let calls = 0;
    const flush = sendFlush(async () => {
      calls++;
      throw new AppError("UNAVAILABLE", "no logic");
    }, 1000);
    const t0 = Date.now();
    const res = await flush([item("a"), item("b")], [t0, t0]);
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(calls).toBeGreaterThan(1);
    expect(res.map((r) => r.err?.code)).toEqual(["UNAVAILABLE", "UNAVAILABLE"]);
  });

  test("an application error is not retried", async () => {
    let calls = 0;
    const flush = sendFlush(async () => {
      calls++;
      throw new AppError("INTERNAL", "bug");
    }, 1000);
    expect((await flush([item("a")], [Date.now()]))[0].err?.code).toBe("INTERNAL");
    expect(calls).toBe(1);
  });

  test("nothing is sent for a batch whose time is already up", async () => {
    let calls = 0;
    const flush = sendFlush(async () => (calls++, []), 1000);
    expect((await flush([item("a")], [Date.now() - 1000]))[0].err?.code).toBe("UNAVAILABLE");
    expect(calls).toBe(0);
  });
});

describe("one rule for whether a send is attempted (sendBatcher)", () => {
  const okSend = (sent: string[]) => async (req: { items: SendReq[] }) => {
    sent.push(...req.items.map((r) => r.body));
    return req.items.map((r, i) => ({ ok: { id: r.body, conv: "room:r", seq: i + 1, ts: 1 } }));
  };

  test("a fresh send batched behind one whose time is nearly up is still sent; only the old one fails", async () => {
    const sent: string[] = [];
    const b = sendBatcher(okSend(sent), 5000, { lingerMs: 5 });
    // 4,500 ms old: 250 ms left before its answer is due (< MIN_BUDGET_MS), but it passed the old
    // queue check (waited < 4,750 ms), and the old flush then failed the whole batch by it.
    const old = b.call(item("old"), Date.now() - 4500);
    const fresh = b.call(item("fresh"));
    await expect(old).rejects.toMatchObject({ code: "UNAVAILABLE" });
    expect(await fresh).toMatchObject({ id: "fresh" });
    expect(sent).toEqual(["fresh"]);
  });

  test("the queue check and the flush agree: a send with just over MIN_BUDGET_MS left is sent, one just under is not", async () => {
    const sent: string[] = [];
    const b = sendBatcher(okSend(sent), 5000);
    const due = 5000 - SEND_ANSWER_MARGIN_MS;
    const over = b.call(item("over"), Date.now() - (due - MIN_BUDGET_MS - 200));
    const under = b.call(item("under"), Date.now() - (due - MIN_BUDGET_MS + 20));
    expect(await over).toMatchObject({ id: "over" });
    await expect(under).rejects.toMatchObject({ code: "UNAVAILABLE" });
    expect(sent).toEqual(["over"]);
  });

  test("between retries, a send whose time ran out fails alone and the others are retried", async () => {
    let calls = 0;
    const seen: string[][] = [];
    const flush = sendFlush(async (req) => {
      seen.push(req.items.map((r) => r.body));
      if (calls++ === 0) {
        await Bun.sleep(150);
        throw new AppError("UNAVAILABLE", "lane broke");
      }
      return req.items.map((r, i) => ({ ok: { id: r.body, conv: "room:r", seq: i + 1, ts: 1 } }));
    }, 5000);
    const now = Date.now();
    // "old" has MIN_BUDGET_MS + 100 ms left at the first attempt, less by the second.
    const res = await flush([item("old"), item("fresh")], [now - (5000 - SEND_ANSWER_MARGIN_MS - MIN_BUDGET_MS - 100), now]);
    expect(seen).toEqual([["old", "fresh"], ["fresh"]]);
    expect(res[0].err?.code).toBe("UNAVAILABLE");
    expect(res[1].ok?.id).toBe("fresh");
  });
});

test("Batcher maxWaitMs: an item that waited too long is rejected UNAVAILABLE and never flushed", async () => {
  const flushed: string[] = [];
  const b = new Batcher<string, string>(async (items) => (flushed.push(...items), items.map((i) => ({ ok: i }))), { maxWaitMs: 100 });
  const late = b.call("late", Date.now() - 200);
  const fresh = b.call("fresh");
  await expect(late).rejects.toMatchObject({ code: "UNAVAILABLE" });
  expect(await fresh).toBe("fresh");
  expect(flushed).toEqual(["fresh"]);
});

test("answerInTime answers UNAVAILABLE once the send's time is up", async () => {
  const t0 = Date.now();
  await expect(answerInTime(new Promise(() => {}), t0, SEND_ANSWER_MARGIN_MS + 100)).rejects.toMatchObject({ code: "UNAVAILABLE" });
  expect(Date.now() - t0).toBeLessThan(1000);
  expect(await answerInTime(Promise.resolve(7), t0, 5000)).toBe(7);
});

describe("answerBudgetMs", () => {
  test("budgetMs counts from arrival, but the caller's absolute answerBy bounds it: a call late on the way gets less", () => {
    const now = 1_000_000;
    expect(answerBudgetMs({ budgetMs: 4000 }, now, 5000)).toBe(4000);
    expect(answerBudgetMs({ budgetMs: 4000, answerBy: now + 3400 }, now, 5000)).toBe(3400); // 600 ms on the way
    expect(answerBudgetMs({ budgetMs: 4000, answerBy: now + 4500 }, now, 5000)).toBe(4000);
    expect(answerBudgetMs({ budgetMs: 4000, answerBy: now - 10 }, now, 5000)).toBe(0);
    expect(answerBudgetMs({ budgetMs: 60_000 }, now, 5000)).toBe(5000);
    expect(answerBudgetMs({ budgetMs: Number.NaN, answerBy: Number.POSITIVE_INFINITY }, now, 5000)).toBe(5000);
    expect(answerBudgetMs({ budgetMs: -1 }, now, 5000)).toBe(5000);
  });
});
