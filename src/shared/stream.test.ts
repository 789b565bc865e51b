import { describe, expect, test } from "bun:test";
import { pack } from "./codec.ts";
import { decodeEvent, encodeEvent, parseEvent, type StreamEvent } from "./stream.ts";

const msg: StreamEvent = { t: "m", id: "7401234567890123456", conv: "room:lobby", from: { userId: 7, userName: "Zoë 🚀" }, body: "héllo {\"quoted\"}", ts: 1764200000000, cmid: "c-1" };

describe("stream events", () => {
  test("round-trip through the stored bytes, unicode included", () => {
    expect(parseEvent(encodeEvent(msg))).toEqual(msg);
    expect(decodeEvent(encodeEvent(msg), 42)).toEqual({
      t: "m",
      msg: { id: msg.id, conv: "room:lobby", seq: 42, from: { userId: 7, userName: "Zoë 🚀" }, body: "héllo {\"quoted\"}", ts: 1764200000000, clientMsgId: "c-1" },
    });
  });

  test("entries stored as MessagePack by earlier versions still decode", () => {
    const p: StreamEvent = { t: "p", room: "lobby", event: "join", user: { userId: 1, userName: "a" } };
    expect(parseEvent(pack(msg))).toEqual(msg);
    expect(decodeEvent(pack(p), 3)).toEqual({ t: "p", p: { room: "lobby", onlineCount: 3, event: "join", user: { userId: 1, userName: "a" } } });
  });

  test("a view into a larger buffer decodes only its own bytes", () => {
    const bytes = encodeEvent(msg);
    const big = Buffer.concat([Buffer.from("xx"), bytes, Buffer.from("yy")]);
    expect(parseEvent(big.subarray(2, 2 + bytes.length))).toEqual(msg);
  });
});
