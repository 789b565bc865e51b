import { expect, test } from "bun:test";
import { dmConv, isParticipant, isSeq, isUserId, parseConv, peerOf, type DmConv } from "./protocol.ts";

const dm = (a: number, b: number) => parseConv(dmConv(a, b)) as DmConv;

test("peerOf and isParticipant: a DM's other user, the note to self, rooms open to all", () => {
  expect(peerOf(dm(7, 3), 3)).toBe(7);
  expect(peerOf(dm(7, 3), 7)).toBe(3);
  expect(peerOf(dm(5, 5), 5)).toBe(5);
  expect([3, 7, 5].map((u) => isParticipant(dm(3, 7), u))).toEqual([true, true, false]);
  expect(isParticipant(parseConv("room:lobby")!, 42)).toBe(true);
});

test("isSeq and isUserId: safe integers from 0 and from 1, nothing else", () => {
  for (const v of [0, 1, 2 ** 53 - 1]) expect(isSeq(v)).toBe(true);
  for (const v of [-1, 0.5, 2 ** 53, NaN, Infinity, "1", null, undefined, 1n]) expect(isSeq(v)).toBe(false);
  expect([0, 1, 2 ** 53 - 1, -1, 1.5, "2"].map(isUserId)).toEqual([false, true, true, false, false, false]);
});
