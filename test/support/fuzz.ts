// Generators (fast-check) of hostile WebSocket client frames and a client that sends one frame at
// a time and waits for its answer: a direct reply, or the socket's close. Used by
// test/fuzz-ws.test.ts.
import fc from "fast-check";
import { Packr } from "msgpackr";
import { pack, unpack } from "../../src/shared/codec.ts";

export type Format = "json" | "msgpack";

/** What the generator made: the bytes or text to send, and the object behind them when there was one. */
export interface Generated {
  data: string | Uint8Array;
  /** The frame object, if the data encodes one (for the ref check); undefined for raw data. */
  obj?: Record<string, unknown>;
  kind: string;
}

const OPS = ["join", "leave", "send", "sync", "ping", "read", "typing"];
const FIELDS = ["op", "room", "toUserId", "body", "clientMsgId", "ref", "conv", "afterSeq", "limit", "seq"];

/** Values of every type, including deep and huge ones and strings with lone surrogates. */
const anyValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: fc.string({ maxLength: 80 }) },
  { weight: 2, arbitrary: fc.string({ unit: "binary", maxLength: 40 }) }, // lone surrogates included
  { weight: 3, arbitrary: fc.integer() },
  { weight: 1, arbitrary: fc.maxSafeInteger() },
  { weight: 2, arbitrary: fc.double() },
  { weight: 1, arbitrary: fc.constantFrom(2 ** 53, -(2 ** 53), 2 ** 64, 1e308, -0, 0.5, Number.MAX_SAFE_INTEGER) },
  { weight: 2, arbitrary: fc.boolean() },
  { weight: 2, arbitrary: fc.constant(null) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
  { weight: 1, arbitrary: fc.array(fc.integer(), { maxLength: 5 }) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 80 }).map((d) => nest(d)) },
  { weight: 1, arbitrary: fc.integer({ min: 100, max: 20_000 }).map((n) => "x".repeat(n)) },
);

/** Plausible values for each field, so that many frames are valid or nearly so. */
const goodValue: Record<string, fc.Arbitrary<unknown>> = {
  op: fc.constantFrom(...OPS),
  room: fc.constantFrom("fuzz-a", "fuzz-b", "fuzz-c", "x".repeat(64), "x".repeat(65), "bad room", ""),
  toUserId: fc.constantFrom(1, 2, 3, 999_999_999),
  body: fc.oneof(fc.string({ minLength: 1, maxLength: 20 }), fc.constantFrom("", "x".repeat(4001), "😀".repeat(4000), "A\ud800B")),
  clientMsgId: fc.oneof(fc.uuid(), fc.constantFrom("", "x".repeat(65), "\udc00")),
  ref: fc.oneof(fc.integer(), fc.string({ maxLength: 70 }), fc.constant(-(2 ** 53 - 1))),
  conv: fc.constantFrom("room:fuzz-a", "room:fuzz-b", "dm:1:2", "dm:2:1", "dm:0:1", "room:", "nope", "room:\ud800"),
  afterSeq: fc.constantFrom(0, 1, 5, -1, 1.5, 2 ** 53),
  limit: fc.constantFrom(1, 100, 500, 501, 0, -3),
  seq: fc.constantFrom(0, 1, 10, -1, 2 ** 60),
};

function nest(depth: number): unknown {
  let v: unknown = 1;
  for (let i = 0; i < depth; i++) v = i % 2 ? [v] : { k: v };
  return v;
}

/** A frame object: each field absent, plausible, or of any type; an unknown field sometimes. */
const frameObject: fc.Arbitrary<Record<string, unknown>> = fc
  .tuple(
    ...FIELDS.map((f) => fc.oneof({ weight: 3, arbitrary: fc.constant(undefined) }, { weight: 4, arbitrary: goodValue[f] }, { weight: 2, arbitrary: anyValue })),
    fc.option(fc.tuple(fc.string({ maxLength: 10 }), anyValue), { freq: 5 }),
  )
  .map((vals) => {
    const o: Record<string, unknown> = {};
    FIELDS.forEach((f, i) => {
      if (vals[i] !== undefined) o[f] = vals[i];
    });
    const extra = vals[FIELDS.length] as [string, unknown] | null;
    if (extra) o[extra[0]] = extra[1];
    return o;
  });

/** Valid frames of every op (ref included), as templates for oneWrongField. */
const TEMPLATES: Record<string, unknown>[] = [
  { op: "join", room: "fuzz-b", ref: 1 },
  { op: "leave", room: "fuzz-b", ref: "l" },
  { op: "send", room: "fuzz-b", body: "hello", clientMsgId: "c-1", ref: 2 },
  { op: "send", toUserId: 1, body: "hi", ref: 3 },
  { op: "sync", conv: "room:fuzz-b", afterSeq: 0, limit: 5, ref: 4 },
  { op: "ping", ref: 5 },
  { op: "read", conv: "room:fuzz-b", seq: 1, ref: 6 },
  { op: "typing", conv: "room:fuzz-b" },
];

/** A valid frame as is (1 in 5), or with one field removed or replaced by a value of any type. */
const oneWrongField: fc.Arbitrary<Record<string, unknown>> = fc
  .tuple(fc.constantFrom(...TEMPLATES), fc.nat(), fc.integer({ min: 0, max: 9 }), anyValue)
  .map(([t, pick, how, v]) => {
    const o = { ...t };
    if (how < 2) return o;
    const keys = Object.keys(o);
    const k = keys[pick % keys.length];
    if (how < 4) delete o[k];
    else o[k] = v;
    return o;
  });

const fixstr = (s: string) => {
  const b = Buffer.from(s);
  return Buffer.concat([Buffer.from([0xa0 | b.length]), b]);
};

/** A MessagePack ext or fixext value of a given type with given data. */
function ext(type: number, data: Uint8Array): Buffer {
  const n = data.length;
  const fixed: Record<number, number> = { 1: 0xd4, 2: 0xd5, 4: 0xd6, 8: 0xd7, 16: 0xd8 };
  const head = fixed[n] ? Buffer.from([fixed[n], type & 0xff]) : Buffer.from([0xc7, n, type & 0xff]);
  return Buffer.concat([head, data]);
}

/** {op, <field>: <ext value>}: every extension type in a frame. */
const extFrame: fc.Arbitrary<Generated> = fc
  .tuple(fc.constantFrom(...OPS), fc.constantFrom("ref", "body", "room", "op", "conv"), fc.integer({ min: -128, max: 127 }), fc.uint8Array({ minLength: 0, maxLength: 20 }))
  .map(([op, field, type, data]) => ({
    data: Buffer.concat([Buffer.from([0x82]), fixstr("op"), fixstr(op), fixstr(field), ext(type, data)]),
    kind: "ext",
  }));

/** msgpackr's own extensions, as a careless or hostile msgpackr client would write them. */
const packrs = [
  new Packr({ useRecords: true }),
  new Packr({ structuredClone: true }),
  new Packr({ useBigIntExtension: true } as ConstructorParameters<typeof Packr>[0]),
  new Packr({ moreTypes: true } as ConstructorParameters<typeof Packr>[0]),
];
const msgpackrExt: fc.Arbitrary<Generated> = fc
  .tuple(fc.constantFrom(...packrs), fc.constantFrom("ref", "body", "room"), fc.constantFrom<() => unknown>(
    () => new Date(0),
    () => 2n ** 100n,
    () => -(2n ** 70n),
    () => new Map([["a", 1]]),
    () => new Set([1]),
    () => new Uint16Array(2),
    () => /x/,
    () => new Error("e"),
    () => {
      const a: unknown[] = [];
      a.push(a);
      return a;
    },
  ))
  .map(([packr, field, make]) => {
    try {
      return { data: packr.pack({ op: "ping", [field]: make() }), kind: "msgpackr-ext" };
    } catch {
      return { data: Uint8Array.from([0x81, 0xa2, 0x6f, 0x70, 0xd6, 0x69, 0, 0, 0, 0]), kind: "msgpackr-ext" };
    }
  });

const randomBytes: fc.Arbitrary<Generated> = fc.uint8Array({ maxLength: 200 }).map((data) => ({ data, kind: "bytes" }));
const randomText: fc.Arbitrary<Generated> = fc.string({ unit: "binary", maxLength: 200 }).map((data) => ({ data, kind: "text" }));
/** A valid frame's bytes, truncated or with one byte changed. */
const mutated: fc.Arbitrary<Generated> = fc
  .tuple(frameObject, fc.nat(), fc.integer({ min: 0, max: 255 }), fc.boolean())
  .map(([o, at, byte, cut]) => {
    const b = Uint8Array.from(pack(o));
    const i = at % b.length;
    if (cut) return { data: b.subarray(0, i), kind: "truncated" };
    b[i] = byte;
    return { data: b, kind: "mutated" };
  });

/** JSON.stringify that never throws (bigints as strings); lone surrogates stay escaped. */
const toJson = (o: unknown) => JSON.stringify(o, (_k, v) => (typeof v === "bigint" ? String(v) : v));

/** One hostile frame for a connection of the given format (either kind of frame is sent on both). */
export function frameArbitrary(format: Format): fc.Arbitrary<Generated> {
  const objects = fc.oneof(frameObject, oneWrongField);
  const asJson = objects.map((obj) => ({ data: toJson(obj), obj, kind: "json" }));
  const asMsgpack = objects.map((obj) => ({ data: pack(obj), obj, kind: "msgpack" }));
  const main = format === "json" ? asJson : asMsgpack;
  const other = format === "json" ? asMsgpack : asJson;
  return fc.oneof(
    { weight: 10, arbitrary: main },
    { weight: 2, arbitrary: other },
    { weight: 2, arbitrary: extFrame },
    { weight: 2, arbitrary: msgpackrExt },
    { weight: 1, arbitrary: mutated },
    { weight: 1, arbitrary: randomBytes },
    { weight: 1, arbitrary: randomText },
  );
}

/** Frames answered by a direct reply (the rest of what a server sends is pushes). */
const REPLY_OPS = new Set(["joined", "left", "ack", "error", "synced", "pong"]);

/**
 * count values of arb, generated CHUNK (500) at a time as the caller takes them; a function of
 * (arb, count, seed) only, so a seed replays a run. The fuzz tests run the cluster in their own
 * process: generating a whole run up front (37,500 frames per lane at FUZZ_FRAMES=150000) held
 * the event loop longer than the etcd lease, and connect, its lease lost, stopped listening.
 */
export function* sampleInChunks<T>(arb: fc.Arbitrary<T>, count: number, seed: number): Generator<T> {
  const CHUNK = 500;
  for (let k = 0; k * CHUNK < count; k++) yield* fc.sample(arb, { numRuns: Math.min(CHUNK, count - k * CHUNK), seed: seed + k * 7919 });
}

/** Close codes the contract gives for a client's frames. */
export const CONTRACT_CLOSES = new Set([4400, 4413, 4429]);

export type Answer = { reply: Record<string, unknown> } | { close: number } | { none: true };

/** A socket that sends one frame and waits for its answer. */
export class FuzzSocket {
  private readonly frames: Record<string, unknown>[] = [];
  closeCode?: number;
  private wake?: () => void;

  private constructor(readonly ws: WebSocket) {
    ws.binaryType = "arraybuffer";
    ws.onmessage = (e) => {
      const f = typeof e.data === "string" ? JSON.parse(e.data) : unpack(new Uint8Array(e.data as ArrayBuffer));
      this.frames.push(f as Record<string, unknown>);
      this.wake?.();
    };
    ws.onclose = (e) => {
      this.closeCode = e.code;
      this.wake?.();
    };
  }

  static open(url: string): Promise<FuzzSocket> {
    const ws = new WebSocket(url);
    const s = new FuzzSocket(ws);
    return new Promise((res, rej) => {
      ws.onopen = () => res(s);
      ws.onerror = () => rej(new Error(`WebSocket to ${url} failed`));
    });
  }

  /**
   * Sends data and waits up to timeoutMs for a direct reply (pushes are skipped) or the close.
   * A frame the contract answers with nothing (a valid `typing`) gets { none: true } once a ping
   * sent after it is answered.
   */
  async exchange(data: string | Uint8Array, op: unknown, timeoutMs: number): Promise<Answer | undefined> {
    this.frames.length = 0;
    this.ws.send(data);
    const BARRIER = "fuzz-barrier";
    const isBarrier = (f: Record<string, unknown>) => f.op === "pong" && f.ref === BARRIER;
    // A barrier pong left over from an earlier frame is not this frame's reply.
    const isReply = (f: Record<string, unknown>) => !isBarrier(f) && (REPLY_OPS.has(f.op as string) || (f.op === "read" && op === "read"));
    const typing = op === "typing";
    if (typing) this.ws.send(JSON.stringify({ op: "ping", ref: BARRIER }));
    const end = Date.now() + timeoutMs;
    for (;;) {
      if (typing) {
        // Answered by nothing when valid: whatever reply came before the barrier's pong, else none.
        const b = this.frames.findIndex(isBarrier);
        if (b >= 0) {
          const f = this.frames.slice(0, b).find(isReply);
          return f ? { reply: f } : { none: true };
        }
      } else {
        const f = this.frames.find(isReply);
        if (f) return { reply: f };
      }
      if (this.closeCode !== undefined) return { close: this.closeCode };
      const left = end - Date.now();
      if (left <= 0) return undefined;
      await new Promise<void>((res) => {
        const t = setTimeout(res, left);
        this.wake = () => {
          clearTimeout(t);
          res();
        };
      });
    }
  }
}
