import { describe, expect, test } from "bun:test";
import { unpack } from "../shared/codec.ts";
import { LIMITS } from "../shared/protocol.ts";
import { ackFrame, encode, errorFrame, parseClientFrame, refOf, syncLimit, textBytes } from "./frames.ts";

describe("parseClientFrame", () => {
  test("well-formed frames come back as they are", () => {
    const frames: unknown[] = [
      { op: "join", room: "a-B_9" },
      { op: "leave", room: "x".repeat(64), ref: 1 },
      { op: "send", room: "r", body: "", clientMsgId: "c" },
      { op: "send", toUserId: 3, body: "hi", room: null, clientMsgId: null },
      { op: "sync", conv: "room:a", afterSeq: 0 },
      { op: "sync", conv: "anything: logic checks it", afterSeq: 5, limit: 1 },
      { op: "ping", extra: true },
    ];
    for (const f of frames) expect(parseClientFrame(f) as unknown).toBe(f);
  });

  test("malformed frames come back as a reason", () => {
    const bad = [
      null,
      [],
      "ping",
      {},
      { op: "PING" },
      { op: "join", room: "" },
      { op: "join", room: 5 },
      { op: "send", room: "r", toUserId: 1, body: "x" },
      { op: "send", body: "x" },
      { op: "send", toUserId: 2 ** 53, body: "x" },
      { op: "send", room: "r", body: null },
      { op: "send", room: "r", body: "x", clientMsgId: 1 },
      { op: "sync", conv: 1, afterSeq: 0 },
      { op: "sync", conv: "c", afterSeq: "0" },
      { op: "sync", conv: "c", afterSeq: 0, limit: 0 },
    ];
    for (const f of bad) expect(parseClientFrame(f)).toBeString();
  });
});

test("refOf: the ref of an object frame, null counting as none", () => {
  expect(refOf({ ref: 0 })).toBe(0);
  expect(refOf({ ref: null })).toBeUndefined();
  expect(refOf([1])).toBeUndefined();
  expect(refOf("x")).toBeUndefined();
});

test("refOf (v1.1): a string of at most 64 characters or a safe integer; anything else is false (no echo)", () => {
  expect(refOf({ ref: "x".repeat(64) })).toBe("x".repeat(64));
  expect(refOf({ ref: -(2 ** 53 - 1) })).toBe(-(2 ** 53 - 1));
  for (const ref of ["x".repeat(65), "a\ud800", 2 ** 53, 1.5, NaN, true, [], {}, new Uint8Array(1), 1n]) expect(refOf({ ref })).toBe(false);
});

test("strings with a lone surrogate are BAD_REQUEST", () => {
  expect(parseClientFrame({ op: "send", room: "r", body: "A\ud800B" })).toBeString();
  expect(parseClientFrame({ op: "send", room: "r", body: "ok", clientMsgId: "\udc00" })).toBeString();
  expect(parseClientFrame({ op: "sync", conv: "room:\ud800", afterSeq: 0 })).toBeString();
  expect(parseClientFrame({ op: "send", room: "r", body: "😀" })).toBeObject();
});

test("syncLimit defaults to 100 and clamps to 500", () => {
  expect(syncLimit(undefined)).toBe(LIMITS.syncDefaultLimit);
  expect(syncLimit(7)).toBe(7);
  expect(syncLimit(10_000)).toBe(LIMITS.syncMaxLimit);
});

test("textBytes decides the frame limit exactly", () => {
  const samples = ["", "abc", "é".repeat(5000), "é".repeat(8192), "é".repeat(8193), "€".repeat(5462), "€".repeat(5461) + "xx", "😀".repeat(4096), "x".repeat(20_000)];
  for (const s of samples) expect(textBytes(s) > LIMITS.maxFrameBytes).toBe(Buffer.byteLength(s) > LIMITS.maxFrameBytes);
});

test("replies leave an absent ref out, so msgpack never carries undefined", () => {
  const f = ackFrame(undefined, { id: "1", conv: "room:a", seq: 1, ts: 2 });
  expect(Object.keys(f)).toEqual(["op", "id", "conv", "seq", "ts"]);
  expect(unpack(encode("msgpack", f) as Uint8Array)).toEqual(f);
  expect(encode("json", errorFrame("r", { code: "BAD_REQUEST", message: "m" }))).toBe('{"op":"error","ref":"r","code":"BAD_REQUEST","message":"m"}');
});
