import { describe, expect, test } from "bun:test";
import { Upstream, type LogicPort } from "./upstream.ts";
import type { SendReq } from "../../proto/logic.ts";

/** A logic that records each send call's items and accepts them all. */
function fakeLogic(calls: SendReq[][]): LogicPort {
  const none = () => Promise.reject(new Error("not used"));
  return {
    send: async (req: { items: SendReq[] }) => {
      calls.push(req.items);
      return req.items.map((_, i) => ({ ok: { id: String(i), conv: "room:r", seq: i + 1, ts: 0 } }));
    },
    authenticate: none,
    presence: none,
    roomInfo: none,
    history: none,
    markRead: none,
    typing: none,
  } as unknown as LogicPort;
}
const item = (body: string): SendReq => ({ from: { userId: 1, userName: "a" }, room: "r", body, retryKey: body });

describe("Upstream sends (IM_SEND_LINGER_MS)", () => {
  test("without a linger, a send after an idle spell goes alone, at once", async () => {
    const calls: SendReq[][] = [];
    const up = new Upstream(fakeLogic(calls), 5000, 0);
    const first = up.send(0, item("a"));
    await Bun.sleep(5);
    await Promise.all([first, up.send(0, item("b"))]);
    expect(calls.map((c) => c.map((i) => i.body))).toEqual([["a"], ["b"]]);
  });

  test("with a linger, sends within it share one call, in order", async () => {
    const calls: SendReq[][] = [];
    const up = new Upstream(fakeLogic(calls), 5000, 500);
    const sent = [up.send(0, item("a"))];
    await Bun.sleep(5);
    sent.push(up.send(0, item("b")), up.send(0, item("c")));
    expect(calls).toEqual([]); // still lingering
    await Promise.all(sent);
    expect(calls.map((c) => c.map((i) => i.body))).toEqual([["a", "b", "c"]]);
  });
});
