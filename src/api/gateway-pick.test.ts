import { describe, expect, test } from "bun:test";
import { pickConnect, type ConnectCandidate } from "./gateway-pick.ts";

const inst = (wsUrl: string, conns: number, ready?: boolean): ConnectCandidate => ({ meta: { wsUrl, conns, ...(ready === undefined ? {} : { ready }) } });

/** How often each URL is handed out over every ordered pair of draws (n² picks, each pair once). */
function shares(instances: ConnectCandidate[], n = instances.length): Record<string, number> {
  const out: Record<string, number> = {};
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++) {
      const draws = [(i + 0.5) / n, (j + 0.5) / n];
      const url = pickConnect(instances, () => draws.shift()!)!;
      out[url] = (out[url] ?? 0) + 1;
    }
  return out;
}

describe("pickConnect (/api/gateway)", () => {
  test("only ready instances with a wsUrl; none: undefined", () => {
    expect(pickConnect([])).toBeUndefined();
    expect(pickConnect([inst("ws://a/ws", 0, false), { meta: { conns: 0 } }, {}])).toBeUndefined();
    for (let k = 0; k < 20; k++) expect(pickConnect([inst("ws://a/ws", 0, false), inst("ws://b/ws", 500), { meta: { wsUrl: 7 } }, inst("", 0)])).toBe("ws://b/ws");
  });

  test("equally loaded instances share new connections evenly", () => {
    const four = ["a", "b", "c", "d"].map((n) => inst(`ws://${n}/ws`, 1000));
    expect(shares(four)).toEqual({ "ws://a/ws": 4, "ws://b/ws": 4, "ws://c/ws": 4, "ws://d/ws": 4 });
  });

  test("the less loaded is preferred, but counts that are seconds old do not send a burst to one instance", () => {
    // Least-connections would give every one of these to a; two random choices give a 3 of 4.
    expect(shares([inst("ws://a/ws", 0), inst("ws://b/ws", 100)])).toEqual({ "ws://a/ws": 3, "ws://b/ws": 1 });
    expect(shares([inst("ws://a/ws", 10), inst("ws://b/ws", 11), inst("ws://c/ws", 12)])).toEqual({ "ws://a/ws": 5, "ws://b/ws": 3, "ws://c/ws": 1 });
    // A count that is not a number, or negative, ranks last instead of winning every draw it is in.
    for (const bad of [NaN, -5, "many"]) expect(shares([{ meta: { wsUrl: "ws://x/ws", conns: bad } }, inst("ws://b/ws", 100)])).toEqual({ "ws://x/ws": 1, "ws://b/ws": 3 });
  });

  test("with Math.random, a burst of 4,000 over four equal instances gives each 18-32 %", () => {
    const four = ["a", "b", "c", "d"].map((n) => inst(`ws://${n}/ws`, 7));
    const n: Record<string, number> = {};
    for (let k = 0; k < 4000; k++) {
      const u = pickConnect(four)!;
      n[u] = (n[u] ?? 0) + 1;
    }
    for (const c of Object.values(n)) expect(c / 4000).toBeWithin(0.18, 0.32);
    expect(Object.keys(n)).toHaveLength(4);
  });
});
