import { describe, expect, test } from "bun:test";
import { assignedTo, ownerOf } from "./rendezvous.ts";

describe("rendezvous assignment", () => {
  const workers = ["task-a-1", "task-b-2", "task-c-3", "task-d-4"];

  test("every partition has exactly one owner, independent of list order", () => {
    const parts = 64;
    const owned = workers.map((w) => assignedTo(w, parts, workers));
    expect(owned.flat().sort((a, b) => a - b)).toEqual([...Array(parts).keys()]);
    for (let p = 0; p < parts; p++) expect(ownerOf(p, [...workers].reverse())).toBe(ownerOf(p, workers)!);
  });

  test("spreads partitions roughly evenly", () => {
    const counts = workers.map((w) => assignedTo(w, 256, workers).length);
    for (const c of counts) expect(c).toBeGreaterThan(32);
  });

  test("a leaving worker only moves its own partitions", () => {
    const before = [...Array(64).keys()].map((p) => ownerOf(p, workers));
    const rest = workers.slice(1);
    for (let p = 0; p < 64; p++) {
      if (before[p] !== workers[0]) expect(ownerOf(p, rest)).toBe(before[p]!);
      else expect(rest).toContain(ownerOf(p, rest)!);
    }
  });

  test("no workers, no owner", () => {
    expect(ownerOf(0, [])).toBeUndefined();
    expect(assignedTo("x", 4, [])).toEqual([]);
  });
});
