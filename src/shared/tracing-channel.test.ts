import { expect, test } from "bun:test";
import dc from "node:diagnostics_channel";
import "./tracing-channel.ts";

test("TracingChannel.hasSubscribers is false with no subscriber and true with one (what ioredis checks before tracing a command)", () => {
  const ch = dc.tracingChannel("bunchat:test") as unknown as { hasSubscribers: boolean } & ReturnType<typeof dc.tracingChannel>;
  expect(ch.hasSubscribers).toBe(false);
  const handlers = { start() {}, end() {}, asyncStart() {}, asyncEnd() {}, error() {} };
  ch.subscribe(handlers);
  expect(ch.hasSubscribers).toBe(true);
  ch.unsubscribe(handlers);
  expect(ch.hasSubscribers).toBe(false);
});

test("with nobody subscribed, ioredis no longer builds a trace context (String() of every argument) per command", async () => {
  // A stand-in for Redis that answers every command with a nil bulk string.
  const fake = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data: (s, d) => void s.write("$-1\r\n".repeat(d.toString().split("*").length - 1)) } });
  const Redis = (await import("ioredis")).default;
  const r = new Redis({ port: fake.port, host: "127.0.0.1", enableReadyCheck: false, lazyConnect: true });
  await r.connect();
  let built = 0;
  const own = r as unknown as { _buildCommandContext: (...a: unknown[]) => unknown };
  const orig = own._buildCommandContext.bind(r);
  own._buildCommandContext = (...a: unknown[]) => (built++, orig(...a));
  expect(await r.get("k")).toBeNull();
  expect(built).toBe(0);
  r.disconnect();
  fake.stop(true);
});
