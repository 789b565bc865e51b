import { expect, test } from "bun:test";
import { watchParent } from "./parent.ts";

test("watchParent calls back once when the parent pid changes, and not before", async () => {
  let ppid = 100;
  const calls: [number, number][] = [];
  const stop = watchParent((was, now) => calls.push([was, now]), 5, () => ppid);
  await Bun.sleep(30);
  expect(calls).toEqual([]);
  ppid = 1;
  await Bun.sleep(30);
  ppid = 7;
  await Bun.sleep(30);
  expect(calls).toEqual([[100, 1]]);
  stop();
});

test("the returned function stops watching", async () => {
  let ppid = 100;
  let called = false;
  const stop = watchParent(() => (called = true), 5, () => ppid);
  stop();
  ppid = 1;
  await Bun.sleep(30);
  expect(called).toBe(false);
});
