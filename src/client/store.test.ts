// The store's keying rules, without a network: repeats land on the same key, gaps show.
import { describe, expect, test } from "bun:test";
import type { Message } from "../shared/protocol.ts";
import { Store, unreadOf } from "./store.ts";

const me = { userId: 1, userName: "me" };
const other = { userId: 2, userName: "other" };
const msg = (seq: number, from = other, clientMsgId?: string): Message => ({ id: String(1000 + seq), conv: "room:r", seq, from, body: `m${seq}`, ts: 1000 + seq, clientMsgId });

describe("Store", () => {
  test("a message delivered twice is held once; a gap is reported and closes when filled", () => {
    const s = new Store();
    s.me = me;
    s.putPage("room:r", [msg(1), msg(2)], false, false);
    expect(s.putMessage(msg(2))).toBe(false);
    expect(s.putMessage(msg(4))).toBe(true); // 3 is missing
    expect(s.conv("room:r").syncedSeq).toBe(2);
    expect(s.putMessage(msg(3))).toBe(false);
    expect(s.conv("room:r").syncedSeq).toBe(4);
    expect(s.timeline("room:r").messages.map((m) => m.seq)).toEqual([1, 2, 3, 4]);
  });

  test("an own message's echo replaces its pending entry and moves the read position", () => {
    const s = new Store();
    s.me = me;
    s.putPage("room:r", [], false, false);
    const c = s.conv("room:r");
    c.pending.set("x", { clientMsgId: "x", body: "m1", createdAt: 1, state: "pending" });
    s.putMessage(msg(1, me, "x"));
    expect(c.pending.size).toBe(0);
    expect(unreadOf(c)).toBe(0);
    s.putMessage(msg(2));
    expect(unreadOf(c)).toBe(1);
  });

  test("a conversation not loaded only counts; a stale list never lowers counters", () => {
    const s = new Store();
    s.me = me;
    s.putMessage(msg(5));
    const c = s.conv("room:r");
    expect(c.messages.size).toBe(0);
    expect(c.lastSeq).toBe(5);
    s.mergeSummaries([{ conv: "room:r", lastSeq: 3, lastTs: 1, readSeq: 2, unread: 1 }]);
    expect(c.lastSeq).toBe(5);
    expect(unreadOf(c)).toBe(3);
  });
});
