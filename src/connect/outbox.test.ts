import { expect, test } from "bun:test";
import { Registry } from "prom-client";
import { AppError } from "../shared/errors.ts";
import { Conn, type Socket } from "./conn.ts";
import { connectMetrics } from "./metrics.ts";
import { Outbox } from "./outbox.ts";

/** Records writes: a corked group as one array, a direct write as a string. */
function fakeSocket(format: "json" | "msgpack", log: (string | string[])[]) {
  let corked: string[] | undefined;
  const write = (d: string | Uint8Array) => {
    const s = typeof d === "string" ? d : `bin:${d.byteLength}`;
    if (corked) corked.push(s);
    else log.push(s);
    return 1;
  };
  const ws = {
    data: new Conn(1, { userId: 1, userName: "u" }, "sid", Date.now() + 60_000, format, Date.now()),
    sendText: write,
    sendBinary: write,
    cork(cb: () => void) {
      corked = [];
      cb();
      log.push(corked);
      corked = undefined;
    },
    getBufferedAmount: () => 0,
    close(code: number) {
      log.push(`close:${code}`);
    },
  };
  return ws as unknown as Socket;
}

function setup() {
  const registry = new Registry();
  const metrics = connectMetrics(registry, { connections: () => 0, rooms: () => 0 });
  return { out: new Outbox(1 << 20, metrics), metrics, registry };
}

test("replies of one turn go out at its end: several to a socket in one corked write, a single one directly", async () => {
  const { out, metrics } = setup();
  const log: (string | string[])[] = [];
  const a = fakeSocket("json", log);
  const b = fakeSocket("json", log);
  out.reply(a, { op: "ack", ref: 1 });
  out.reply(b, { op: "ack", ref: 2 });
  out.reply(a, { op: "ack", ref: 3 });
  out.error(a, 4, new AppError("RATE_LIMITED", "slow down"), true);
  expect(log).toEqual([]);
  await Promise.resolve();
  expect(log).toEqual([
    ['{"op":"ack","ref":1}', '{"op":"ack","ref":3}', '{"op":"error","ref":4,"code":"RATE_LIMITED","message":"slow down"}'],
    '{"op":"ack","ref":2}',
  ]);
  expect(metrics.framesOut.n).toBe(4);
  expect(metrics.errors.child("RATE_LIMITED").n).toBe(1);
});

test("a frame sent while replies are held queues behind them; after the flush, sends are direct again", async () => {
  const { out } = setup();
  const log: (string | string[])[] = [];
  const a = fakeSocket("json", log);
  out.reply(a, { op: "ack", ref: 1 });
  out.send(a, { op: "pong" });
  await Promise.resolve();
  out.send(a, { op: "left" });
  expect(log).toEqual([['{"op":"ack","ref":1}', '{"op":"pong"}'], '{"op":"left"}']);
});

test("held replies of a socket closed meanwhile are dropped; msgpack replies are binary", async () => {
  const { out } = setup();
  const log: (string | string[])[] = [];
  const a = fakeSocket("json", log);
  const m = fakeSocket("msgpack", log);
  out.reply(a, { op: "ack", ref: 1 });
  out.reply(m, { op: "ack", ref: 2 });
  a.data.closed = true;
  await Promise.resolve();
  expect(log).toEqual([expect.stringMatching(/^bin:/)]);
  expect(a.data.held).toBeUndefined();
});

test("closing a socket writes its held replies first", async () => {
  const { out } = setup();
  const log: (string | string[])[] = [];
  const a = fakeSocket("json", log);
  out.reply(a, { op: "ack", ref: 1 });
  out.reply(a, { op: "ack", ref: 2 });
  out.close(a, 4429, "too slow");
  a.data.closed = true; // as the close handler does
  await Promise.resolve();
  expect(log).toEqual([['{"op":"ack","ref":1}', '{"op":"ack","ref":2}'], "close:4429"]);
});

test("tallies reach /metrics at scrape time, each count once", async () => {
  const { metrics, registry } = setup();
  metrics.framesIn.inc();
  metrics.framesIn.inc(2);
  metrics.closes.child("1000").inc();
  metrics.pushEvents.child("m").inc(5);
  let text = await registry.metrics();
  expect(text).toMatch(/^bunchat_connect_frames_in_total 3$/m);
  expect(text).toMatch(/^bunchat_connect_closes_total\{code="1000"\} 1$/m);
  expect(text).toMatch(/^bunchat_connect_push_events_total\{t="m"\} 5$/m);
  metrics.framesIn.inc();
  metrics.pushEvents.child("p").inc();
  text = await registry.metrics();
  expect(text).toMatch(/^bunchat_connect_frames_in_total 4$/m);
  expect(text).toMatch(/^bunchat_connect_push_events_total\{t="m"\} 5$/m);
  expect(text).toMatch(/^bunchat_connect_push_events_total\{t="p"\} 1$/m);
});

test("a frame that cannot be encoded goes out as an INTERNAL error frame, never a throw", async () => {
  const { out, metrics } = setup();
  const log: (string | string[])[] = [];
  const ws = fakeSocket("json", log);
  const cyclic: Record<string, unknown> = { op: "pong" };
  cyclic.self = cyclic;
  expect(() => out.send(ws, cyclic)).not.toThrow();
  expect(() => out.reply(ws, { op: "ack", big: 1n })).not.toThrow();
  await Promise.resolve();
  const internal = '{"op":"error","code":"INTERNAL","message":"reply could not be encoded"}';
  expect(log).toEqual([internal, internal]);
  expect(metrics.errors.child("INTERNAL").n).toBe(2);
});
