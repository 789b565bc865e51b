import { expect, test } from "bun:test";
import { SlidingWindow } from "./conn.ts";

test("SlidingWindow trips on the (limit+1)th hit within the window", () => {
  const w = new SlidingWindow(3, 1000);
  expect([0, 10, 20].map((t) => w.hit(t))).toEqual([false, false, false]);
  expect(w.hit(999)).toBe(true);
});

test("SlidingWindow forgets hits older than the window", () => {
  const w = new SlidingWindow(2, 100);
  expect(w.hit(0)).toBe(false);
  expect(w.hit(50)).toBe(false);
  expect(w.hit(100)).toBe(false); // the hit at 0 is out of the window
  expect(w.hit(120)).toBe(true); // 50, 100, 120
  expect(w.hit(400)).toBe(false);
});
