// Hub with fakes: room fan-out through the publish function, and the delivery histogram.
import { expect, test } from "bun:test";
import { Registry } from "prom-client";
import { silentLogger } from "../shared/log.ts";
import { roomConv, type Message } from "../shared/protocol.ts";
import { Conn, type Socket } from "./conn.ts";
import { Hub } from "./hub.ts";
import { connectMetrics } from "./metrics.ts";
import { Outbox } from "./outbox.ts";

function socket(no: number, format: "json" | "msgpack") {
  const topics = new Set<string>();
  const ws = {
    data: new Conn(no, { userId: no, userName: `u${no}` }, "sid", Date.now() + 60_000, format, Date.now()),
    subscribe: (t: string) => void topics.add(t),
    unsubscribe: (t: string) => void topics.delete(t),
  };
  return ws as unknown as Socket;
}

function setup() {
  const registry = new Registry();
  const metrics = connectMetrics(registry, { connections: () => 0, rooms: () => 0 });
  const published: [string, string | Uint8Array][] = [];
  const hub = new Hub((topic, data) => (published.push([topic, data]), 1), new Outbox(1 << 20, metrics), metrics, silentLogger);
  return { hub, registry, metrics, published };
}

const msg = (room: string, ts: number): Message => ({ id: "1", conv: roomConv(room), seq: 1, from: { userId: 9, userName: "u9" }, body: "hi", ts });

test("a room message is published once per format with local subscribers, and timed once into the delivery histogram", async () => {
  const { hub, registry, metrics, published } = setup();
  const socks = [socket(1, "json"), socket(2, "json"), socket(3, "msgpack")];
  for (const ws of socks) {
    hub.add(ws);
    hub.join(ws, "r1");
  }
  hub.apply([{ t: "m", room: "r1", msg: msg("r1", Date.now() - 30) }]);
  expect(published.map(([t]) => t)).toEqual(["r:r1:j", "r:r1:m"]);
  expect(JSON.parse(published[0][1] as string)).toMatchObject({ op: "msg", conv: "room:r1", body: "hi" });
  expect(metrics.framesOut.n).toBe(3);
  const text = await registry.metrics();
  // ~30 ms old: above the 0.025 bound, within 0.05 (a loaded box may add a few ms, never 20).
  expect(text).toContain('bunchat_connect_delivery_seconds_bucket{le="0.025"} 0');
  expect(text).toMatch(/bunchat_connect_delivery_seconds_bucket\{le="(0\.05|0\.1)"\} 1/);
  expect(text).toContain("bunchat_connect_delivery_seconds_count 1");
});

test("a message for a room with no local socket publishes nothing but is still timed; a bad ts is not counted", async () => {
  const { hub, registry, published } = setup();
  hub.apply([{ t: "m", room: "elsewhere", msg: msg("elsewhere", Date.now()) }]);
  hub.apply([{ t: "m", room: "elsewhere", msg: { ...msg("elsewhere", 0), ts: "x" as unknown as number } }]);
  expect(published).toEqual([]);
  expect(await registry.metrics()).toContain("bunchat_connect_delivery_seconds_count 1");
});
