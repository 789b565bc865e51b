import { describe, expect, test } from "bun:test";
import { AppError } from "./errors.ts";
import { Batcher } from "./batcher.ts";
import { answerBudgetMs, answerInTime, sendFlush, SEND_ANSWER_MARGIN_MS } from "./send-deadline.ts";
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
    const res = await flush([item("a"), item("b")], oldestAt);
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
    const res = await flush([item("a"), item("b")], t0);
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
    expect((await flush([item("a")], Date.now()))[0].err?.code).toBe("INTERNAL");
    expect(calls).toBe(1);
  });

  test("nothing is sent for a batch whose time is already up", async () => {
    let calls = 0;
    const flush = sendFlush(async () => (calls++, []), 1000);
    expect((await flush([item("a")], Date.now() - 1000))[0].err?.code).toBe("UNAVAILABLE");
    expect(calls).toBe(0);
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
