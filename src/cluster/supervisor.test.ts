import { expect, test } from "bun:test";
import { restartDelays } from "./supervisor.ts";

test("restart delays double from initialMs up to maxMs and start over after a long enough run", () => {
  const next = restartDelays({ initialMs: 200, maxMs: 5_000, resetAfterMs: 30_000 });
  expect([1, 1, 1, 1, 1, 1, 1].map((ran) => next(ran))).toEqual([200, 400, 800, 1600, 3200, 5000, 5000]);
  expect(next(29_999)).toBe(5000);
  expect(next(30_000)).toBe(200);
  expect(next(0)).toBe(400);
  expect(restartDelays()(0)).toBe(200); // DEFAULT_BACKOFF
});
