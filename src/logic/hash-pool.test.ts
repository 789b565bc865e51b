import { afterAll, expect, test } from "bun:test";
import { Registry } from "prom-client";
import { AppError } from "../shared/errors.ts";
import { HashPool } from "./hash-pool.ts";

const pools: HashPool[] = [];
const newPool = (o: ConstructorParameters<typeof HashPool>[0]) => {
  const p = new HashPool(o);
  pools.push(p);
  return p;
};
const settle = <T>(p: Promise<T>) => p.then((v) => ({ v, at: performance.now() }), (e) => ({ e, at: performance.now() }));

afterAll(() => pools.forEach((p) => p.close()));

test("full pool: a job beyond concurrency + queue is refused at once with RATE_LIMITED and a Retry-After", async () => {
  const registry = new Registry();
  // Generous waits: on a loaded machine a hash at nice 10 can take seconds.
  const pool = newPool({ concurrency: 1, maxQueue: 1, registry, maxWaitMs: 60_000, waitBudgetMs: 60_000 });
  const t0 = performance.now();
  const [a, b, c] = await Promise.all([settle(pool.hash("password-1")), settle(pool.hash("password-2")), settle(pool.hash("password-3"))]);
  expect("v" in a && typeof a.v).toBe("string");
  expect("v" in b && typeof b.v).toBe("string");
  expect("e" in c).toBe(true);
  const err = (c as { e: AppError }).e;
  expect(err).toBeInstanceOf(AppError);
  expect(err.code).toBe("RATE_LIMITED");
  expect(err.retryAfterSec).toBe(1);
  // Refused before the first hash was done, not after waiting behind it.
  expect(c.at).toBeLessThan(a.at);
  expect(c.at - t0).toBeLessThan(a.at - t0);
  const jobs = await registry.getSingleMetric("bunchat_logic_password_jobs_total")!.get();
  const count = (result: string) => jobs.values.filter((v) => v.labels.result === result).reduce((s, v) => s + v.value, 0);
  expect(count("done")).toBe(2);
  expect(count("refused")).toBe(1);
  expect(await pool.verify("password-1", (a as { v: string }).v)).toBe(true);
});

test("a job whose expected wait is over the budget is refused at once", async () => {
  const pool = newPool({ concurrency: 1, maxQueue: 100, waitBudgetMs: 1, maxWaitMs: 60_000 });
  await pool.hash("warm-up-password"); // the job time estimate is now a real hash's, over 1 ms
  const [a, b] = await Promise.all([settle(pool.hash("password-1")), settle(pool.hash("password-2"))]);
  expect("v" in a).toBe(true);
  expect((b as { e: AppError }).e?.code).toBe("RATE_LIMITED");
  expect(b.at).toBeLessThan(a.at);
});

test("a queued job that waited longer than maxWaitMs is refused instead of run late", async () => {
  const pool = newPool({ concurrency: 1, maxQueue: 4, maxWaitMs: 0 });
  const [a, b] = await Promise.all([settle(pool.hash("password-1")), settle(pool.hash("password-2"))]);
  expect("v" in a).toBe(true);
  expect((b as { e: AppError }).e?.code).toBe("RATE_LIMITED");
  // The slot was handed back: the pool still works.
  expect(typeof (await pool.hash("password-3"))).toBe("string");
});

test("hashing runs on a thread of lower priority (nice 10), not on the event loop", async () => {
  const pool = newPool({ concurrency: 1, maxQueue: 1, maxWaitMs: 60_000, waitBudgetMs: 60_000 });
  const h = await pool.hash("password-1");
  expect(await pool.verify("password-1", h)).toBe(true);
  expect(await pool.verify("password-2", h)).toBe(false);
  const { readdirSync, readFileSync } = await import("node:fs");
  const nice = (tid: string) => {
    const s = readFileSync(`/proc/${process.pid}/task/${tid}/stat`, "utf8");
    return Number(s.slice(s.lastIndexOf(")") + 2).split(" ")[16]);
  };
  const nices = readdirSync(`/proc/${process.pid}/task`).map(nice);
  expect(nices).toContain(10);
  expect(nice(String(process.pid))).toBe(0); // the main (event loop) thread
});
