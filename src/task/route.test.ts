import { describe, expect, test } from "bun:test";
import { redisKeys } from "../shared/keys.ts";
import type { Message } from "../shared/protocol.ts";
import { compareIds } from "./consumer.ts";
import { routeOf } from "./route.ts";

const keys = redisKeys("x:");
const msg = (conv: string): Message => ({ id: "1", conv, seq: 1, from: { userId: 1, userName: "ann" }, body: "b", ts: 1 });

describe("routeOf", () => {
  test("room message → room instances, tagged with the room", () => {
    expect(routeOf({ t: "m", msg: msg("room:lobby") }, keys)).toEqual({
      lookups: [keys.roomInstances("lobby")],
      event: { t: "m", msg: msg("room:lobby"), room: "lobby" },
    });
  });

  test("direct message → instances of both users; a note to self names its user once", () => {
    expect(routeOf({ t: "m", msg: msg("dm:3:12") }, keys)).toEqual({
      lookups: [keys.userInstances(3), keys.userInstances(12)],
      event: { t: "m", msg: msg("dm:3:12"), users: [3, 12] },
    });
    expect(routeOf({ t: "m", msg: msg("dm:7:7") }, keys)?.event).toEqual({ t: "m", msg: msg("dm:7:7"), users: [7] });
  });

  test("presence → room instances; kick → the user's instances", () => {
    const p = { room: "r", onlineCount: 2, event: "join" as const, user: { userId: 5, userName: "bob" } };
    expect(routeOf({ t: "p", p }, keys)).toEqual({ lookups: [keys.roomInstances("r")], event: { t: "p", p } });
    expect(routeOf({ t: "k", userId: 5, sid: "s" }, keys)).toEqual({ lookups: [keys.userInstances(5)], event: { t: "k", userId: 5, sid: "s" } });
  });

  test("malformed conversation ids are not routed", () => {
    for (const conv of ["dm:5:3", "room:", "dm:0:1", "nope"]) expect(routeOf({ t: "m", msg: msg(conv) }, keys)).toBeNull();
  });
});

describe("compareIds", () => {
  test("orders by milliseconds, then sequence, numerically", () => {
    expect(compareIds("10-0", "9-5")).toBe(1);
    expect(compareIds("5-2", "5-10")).toBe(-1);
    expect(compareIds("1700000000000-3", "1700000000000-3")).toBe(0);
  });
});
