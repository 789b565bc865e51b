import { describe, expect, test } from "bun:test";
import { assignedTo, owners } from "./rendezvous.ts";

describe("partition assignment", () => {
  const workers = ["task-a-1", "task-b-2", "task-c-3", "task-d-4"];

  test("every partition has exactly one owner, independent of list order", () => {
    const parts = 64;
    const owned = workers.map((w) => assignedTo(w, parts, workers));
    expect(owned.flat().sort((a, b) => a - b)).toEqual([...Array(parts).keys()]);
    expect(owners(parts, [...workers].reverse())).toEqual(owners(parts, workers));
  });

  test("splits evenly: every worker gets floor or ceil of partitions / workers", () => {
    for (const [parts, n] of [[2, 2], [8, 2], [8, 3], [7, 4], [256, 4], [3, 4]] as const) {
      const ids = workers.slice(0, n);
      for (const c of ids.map((w) => assignedTo(w, parts, ids).length)) {
        expect(c).toBeGreaterThanOrEqual(Math.floor(parts / n));
        expect(c).toBeLessThanOrEqual(Math.ceil(parts / n));
      }
    }
  });

  test("a leaving worker's partitions go to the others, and most others stay", () => {
    const before = owners(64, workers);
    const after = owners(64, workers.slice(1));
    const moved = before.filter((o, p) => o !== workers[0] && after[p] !== o).length;
    for (let p = 0; p < 64; p++) expect(workers.slice(1)).toContain(after[p]);
    expect(moved).toBeLessThan(16);
  });

  test("no workers, no owner", () => {
    expect(owners(4, [])).toEqual([]);
    expect(assignedTo("x", 4, [])).toEqual([]);
  });
});
