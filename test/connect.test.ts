// Connect tier over real WebSockets, against an in-memory fake of logic: auth, formats, ops,
// validation and the per-connection limits.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { pack } from "../src/shared/codec.ts";
import { CLOSE, LIMITS } from "../src/shared/protocol.ts";
import { eventually } from "./support/http.ts";
import { ConnectServer } from "../src/connect/server.ts";
import { loadConfig } from "../src/shared/config.ts";
import { silentLogger } from "../src/shared/log.ts";
import { FakeDiscovery, FakeLogic, WsClient, startConnect, type TestConnect } from "./support/connect.ts";

let c: TestConnect;
const clients: WsClient[] = [];

beforeAll(async () => {
  c = await startConnect({ maxRoomsPerConn: 3 });
});
afterAll(async () => {
  for (const cl of clients) cl.ws.close();
  await c.stop();
});

async function connect(token: string, format?: "json" | "msgpack"): Promise<WsClient> {
  const cl = await WsClient.open(c.wsUrl(token, format));
  clients.push(cl);
  return cl;
}

async function newUser(format?: "json" | "msgpack") {
  const u = c.logic.user();
  return { ...u, ws: await connect(u.token, format) };
}

let roomNo = 0;
const room = () => `room-${++roomNo}`;

describe("upgrade", () => {
  test("missing, unknown, expired and revoked tokens are refused with 401", async () => {
    const expired = c.logic.user("expired", Date.now() - 1);
    const revoked = c.logic.user("revoked");
    c.logic.sessions.delete(revoked.token);
    for (const q of ["", "?token=", "?token=nope", `?token=${expired.token}`, `?token=${revoked.token}`]) {
      const res = await fetch(`${c.http}/ws${q}`);
      expect(res.status).toBe(401);
      expect(((await res.json()) as any).error.code).toBe("UNAUTHENTICATED");
    }
    await expect(WsClient.open(c.wsUrl("nope"))).rejects.toThrow();
  });

  test("logic unreachable is 503 UNAVAILABLE", async () => {
    const { token } = c.logic.user();
    c.logic.down = true;
    try {
      const res = await fetch(`${c.http}/ws?token=${token}`);
      expect(res.status).toBe(503);
      expect(await res.json()).toEqual({ error: { code: "UNAVAILABLE", message: expect.any(String) } });
    } finally {
      c.logic.down = false;
    }
  });

  test("a plain GET with a valid token is not upgraded; an unknown format is 400", async () => {
    const { token } = c.logic.user();
    expect((await fetch(`${c.http}/ws?token=${token}`)).status).toBe(400);
    expect((await fetch(`${c.http}/ws?token=${token}&format=xml`)).status).toBe(400);
  });

  test("public port: /healthz only; /healthz, /readyz and /metrics on the internal ops port", async () => {
    await newUser();
    expect((await fetch(`${c.http}/healthz`)).status).toBe(200);
    expect((await fetch(`${c.http}/metrics`)).status).toBe(404);
    expect((await fetch(`${c.http}/readyz`)).status).toBe(404);
    expect((await fetch(`${c.http}/nope`)).status).toBe(404);
    const ops = `http://127.0.0.1:${c.server.metricsPort}`;
    expect((await fetch(`${ops}/healthz`)).status).toBe(200);
    expect((await fetch(`${ops}/readyz`)).status).toBe(200);
    const text = await (await fetch(`${ops}/metrics`)).text();
    expect(text).toContain("bunchat_connect_connections");
    expect(text).toContain("bunchat_connect_frames_in_total");
    expect(text).toContain('bunchat_build_info{version="');
    expect(text).not.toContain("instance=");
  });
});

describe("formats", () => {
  test("JSON connections get text frames; ping echoes ref, and has none without one", async () => {
    const { ws } = await newUser();
    ws.send({ op: "ping", ref: 7 });
    const pong = await ws.op("pong", 7);
    expect(pong.ts).toBeNumber();
    ws.send({ op: "ping" });
    expect(Object.keys(await ws.op("pong"))).toEqual(["op", "ts"]);
    expect(ws.kinds.every((k) => k === "text")).toBe(true);
  });

  test("msgpack connections get binary frames, whatever the client sends", async () => {
    const { ws } = await newUser("msgpack");
    ws.send({ op: "ping", ref: "a" }, true);
    await ws.op("pong", "a");
    ws.send({ op: "ping", ref: "b" }); // JSON text is accepted too
    await ws.op("pong", "b");
    ws.send({ op: "nope", ref: "c" }, true);
    expect((await ws.op("error", "c")).code).toBe("BAD_REQUEST");
    expect(ws.kinds).toEqual(["binary", "binary", "binary"]);
  });

  test("JSON connections accept msgpack binary frames and answer in JSON", async () => {
    const { ws } = await newUser();
    ws.send({ op: "ping", ref: "m" }, true);
    await ws.op("pong", "m");
    expect(ws.kinds).toEqual(["text"]);
  });
});

describe("join and leave", () => {
  test("join replies joined, counts the user once, and announces connect/join to logic in order", async () => {
    const a = await newUser();
    const b = await newUser();
    const r = room();
    a.ws.send({ op: "join", room: r, ref: 1 });
    expect(await a.ws.op("joined", 1)).toEqual({ op: "joined", ref: 1, room: r, conv: `room:${r}`, onlineCount: 1, lastSeq: 0 });
    b.ws.send({ op: "join", room: r });
    expect((await b.ws.op("joined")).onlineCount).toBe(2);
    // A repeated join is answered from roomInfo, not counted again.
    a.ws.send({ op: "join", room: r, ref: 2 });
    expect((await a.ws.op("joined", 2)).onlineCount).toBe(2);
    const ops = c.logic.presenceOps.filter((o) => o.user.userId === a.user.userId);
    expect(ops.map((o) => o.k)).toEqual(["connect", "join"]);
    expect(ops[1]).toMatchObject({ inst: expect.stringMatching(/^connect-test-/), user: a.user, room: r });
  });

  test("lastSeq reflects the room's messages", async () => {
    const a = await newUser();
    const r = room();
    a.ws.send({ op: "send", room: r, body: "one" });
    a.ws.send({ op: "send", room: r, body: "two" });
    await a.ws.op("ack");
    await a.ws.op("ack");
    a.ws.send({ op: "join", room: r });
    expect((await a.ws.op("joined")).lastSeq).toBe(2);
  });

  test("leave replies left, is idempotent, and sends one presence leave", async () => {
    const a = await newUser();
    const r = room();
    a.ws.send({ op: "join", room: r });
    await a.ws.op("joined");
    a.ws.send({ op: "leave", room: r, ref: "x" });
    expect(await a.ws.op("left", "x")).toEqual({ op: "left", ref: "x", room: r });
    a.ws.send({ op: "leave", room: r, ref: "y" });
    await a.ws.op("left", "y");
    a.ws.send({ op: "leave", room: room(), ref: "z" });
    await a.ws.op("left", "z");
    expect(c.logic.presenceOps.filter((o) => o.user.userId === a.user.userId && o.k === "leave")).toHaveLength(1);
    expect(c.logic.members.get(r)?.size ?? 0).toBe(0);
  });

  test("join then leave sent back to back are answered and applied in order", async () => {
    const a = await newUser();
    const r = room();
    a.ws.send({ op: "join", room: r, ref: 1 });
    a.ws.send({ op: "leave", room: r, ref: 2 });
    a.ws.send({ op: "join", room: r, ref: 3 });
    await a.ws.op("joined", 3);
    expect(a.ws.all.map((f) => `${f.op}${f.ref}`)).toEqual(["joined1", "left2", "joined3"]);
    expect(c.logic.members.get(r)?.get(a.user.userId)).toBe(1);
  });

  test("joining past the per-connection room limit is FORBIDDEN; the connection carries on", async () => {
    const a = await newUser();
    for (let i = 0; i < c.config.maxRoomsPerConn; i++) {
      a.ws.send({ op: "join", room: room() });
      await a.ws.op("joined");
    }
    a.ws.send({ op: "join", room: room(), ref: "over" });
    expect(await a.ws.op("error", "over")).toMatchObject({ code: "FORBIDDEN" });
    await a.ws.flush();
  });

  test("a join logic refuses is reported and leaves no subscription", async () => {
    const a = await newUser();
    a.ws.send({ op: "join", room: "deny-1", ref: "d" });
    expect(await a.ws.op("error", "d")).toMatchObject({ code: "FORBIDDEN", message: "room closed" });
    // The room slot was given back: the limit still allows maxRoomsPerConn rooms.
    for (let i = 0; i < c.config.maxRoomsPerConn; i++) {
      a.ws.send({ op: "join", room: room() });
      await a.ws.op("joined");
    }
    expect(c.server.connections).toBeGreaterThan(0);
  });

  test("closing sends a leave for each joined room, then disconnect", async () => {
    const a = await newUser();
    const [r1, r2] = [room(), room()];
    a.ws.send({ op: "join", room: r1 });
    a.ws.send({ op: "join", room: r2 });
    await a.ws.op("joined");
    await a.ws.op("joined");
    await a.ws.closeAndWait();
    const mine = () => c.logic.presenceOps.filter((o) => o.user.userId === a.user.userId).map((o) => (o.k === "join" || o.k === "leave" ? `${o.k}:${o.room}` : o.k));
    await eventually(() => mine().includes("disconnect"));
    expect(mine()).toEqual(["connect", `join:${r1}`, `join:${r2}`, `leave:${r1}`, `leave:${r2}`, "disconnect"]);
  });
});

describe("malformed frames", () => {
  const cases: [string, string | Uint8Array][] = [
    ["not JSON", "{nope"],
    ["empty text", ""],
    ["not msgpack", new Uint8Array([0xc1])],
    ["array", "[1,2]"],
    ["number", "42"],
    ["string", '"join"'],
    ["null", "null"],
    ["msgpack non-object", pack(5)],
    ["no op", '{"ref":1}'],
    ["unknown op", '{"op":"dance","ref":1}'],
    ["op not a string", '{"op":5}'],
    ["join without room", '{"op":"join","ref":1}'],
    ["join with bad room", '{"op":"join","room":"a b","ref":1}'],
    ["join with long room", JSON.stringify({ op: "join", room: "x".repeat(65), ref: 1 })],
    ["leave without room", '{"op":"leave"}'],
    ["send with room and toUserId", '{"op":"send","room":"a","toUserId":1,"body":"x","ref":1}'],
    ["send with neither", '{"op":"send","body":"x","ref":1}'],
    ["send with bad room", '{"op":"send","room":"","body":"x"}'],
    ["send to user 0", '{"op":"send","toUserId":0,"body":"x"}'],
    ["send to user -1", '{"op":"send","toUserId":-1,"body":"x"}'],
    ["send to user 1.5", '{"op":"send","toUserId":1.5,"body":"x"}'],
    ["send to user as string", '{"op":"send","toUserId":"1","body":"x"}'],
    ["send without body", '{"op":"send","room":"a"}'],
    ["send with numeric body", '{"op":"send","room":"a","body":5}'],
    ["send with numeric clientMsgId", '{"op":"send","room":"a","body":"x","clientMsgId":5}'],
    ["sync without conv", '{"op":"sync","afterSeq":0}'],
    ["sync without afterSeq", '{"op":"sync","conv":"room:a"}'],
    ["sync with negative afterSeq", '{"op":"sync","conv":"room:a","afterSeq":-1}'],
    ["sync with fractional afterSeq", '{"op":"sync","conv":"room:a","afterSeq":0.5}'],
    ["sync with limit 0", '{"op":"sync","conv":"room:a","afterSeq":0,"limit":0}'],
    ["sync with string limit", '{"op":"sync","conv":"room:a","afterSeq":0,"limit":"5"}'],
  ];

  test.each(cases)("%s → BAD_REQUEST, connection stays open", async (_name, data) => {
    const { ws, user } = await newUser();
    ws.raw(data);
    const err = await ws.op("error");
    expect(err.code).toBe("BAD_REQUEST");
    expect(err.message).toBeString();
    await ws.flush();
    expect(c.logic.sendBatches.flat().filter((i) => i.from.userId === user.userId)).toHaveLength(0);
  });

  test("the ref of a malformed object frame is echoed", async () => {
    const { ws } = await newUser();
    ws.raw('{"op":"join","room":"bad room","ref":"r1"}');
    expect((await ws.op("error", "r1")).code).toBe("BAD_REQUEST");
  });

  test("20 malformed frames are tolerated, the 21st within 10 s closes with 4400", async () => {
    const { ws } = await newUser();
    for (let i = 0; i < LIMITS.malformedPerWindow; i++) ws.raw("nope");
    for (let i = 0; i < LIMITS.malformedPerWindow; i++) await ws.op("error");
    await ws.flush();
    ws.raw("nope");
    expect((await ws.closed).code).toBe(CLOSE.MALFORMED);
  });
});

describe("frame size", () => {
  /** A ping frame of exactly n bytes of UTF-8, padded in an extra field with `pad` characters (a ref is at most 64 characters). */
  function pingOf(n: number, pad: string): string {
    const base = JSON.stringify({ op: "ping", pad: "" });
    const padBytes = n - Buffer.byteLength(base);
    const unit = Buffer.byteLength(pad);
    const s = JSON.stringify({ op: "ping", pad: pad.repeat(Math.floor(padBytes / unit)) + "x".repeat(padBytes % unit) });
    expect(Buffer.byteLength(s)).toBe(n);
    return s;
  }

  for (const pad of ["x", "é", "€", "😀"]) {
    test(`16,384 bytes are allowed, 16,385 close with 4413 (padding ${pad})`, async () => {
      const { ws } = await newUser();
      ws.raw(pingOf(LIMITS.maxFrameBytes, pad));
      await ws.op("pong");
      ws.raw(pingOf(LIMITS.maxFrameBytes + 1, pad));
      expect((await ws.closed).code).toBe(CLOSE.FRAME_TOO_LARGE);
    });
  }

  test("binary frames are measured in bytes too", async () => {
    const { ws } = await newUser("msgpack");
    const frame = (n: number) => {
      const base = pack({ op: "ping", pad: new Uint8Array(0) }).byteLength;
      // bin 16 header: 2 more length bytes than the empty bin 8.
      return pack({ op: "ping", pad: new Uint8Array(n - base - 1) });
    };
    expect(frame(LIMITS.maxFrameBytes).byteLength).toBe(LIMITS.maxFrameBytes);
    ws.raw(frame(LIMITS.maxFrameBytes));
    await ws.op("pong");
    ws.raw(frame(LIMITS.maxFrameBytes + 1));
    expect((await ws.closed).code).toBe(CLOSE.FRAME_TOO_LARGE);
  });
});

describe("send", () => {
  test("a room send is acked with ref, id, conv, seq, ts; the item carries from and a retryKey", async () => {
    const a = await newUser();
    const r = room();
    a.ws.send({ op: "send", room: r, body: "hello", clientMsgId: "c1", ref: "s1" });
    const ack = await a.ws.op("ack", "s1");
    expect(ack).toEqual({ op: "ack", ref: "s1", id: expect.any(String), conv: `room:${r}`, seq: 1, ts: expect.any(Number) });
    const item = c.logic.sendBatches.flat().find((i) => i.room === r)!;
    expect(item).toEqual({ from: a.user, room: r, body: "hello", clientMsgId: "c1", retryKey: expect.stringMatching(/^connect-test-\d+:\d+:1$/) });
  });

  test("a direct send is acked; errors from logic come back as error frames with their code", async () => {
    const a = await newUser();
    const b = await newUser();
    a.ws.send({ op: "send", toUserId: b.user.userId, body: "hi", ref: 1 });
    expect((await a.ws.op("ack", 1)).conv).toBe(`dm:${a.user.userId}:${b.user.userId}`);
    a.ws.send({ op: "send", toUserId: 999_999, body: "hi", ref: 2 });
    expect(await a.ws.op("error", 2)).toEqual({ op: "error", ref: 2, code: "NOT_FOUND", message: "no such user" });
    a.ws.send({ op: "send", room: room(), body: "", ref: 3 });
    expect((await a.ws.op("error", 3)).code).toBe("BAD_REQUEST");
    a.ws.send({ op: "send", room: room(), body: "x".repeat(4001), ref: 4 });
    expect((await a.ws.op("error", 4)).code).toBe("BAD_REQUEST");
  });

  test("sends of one connection reach logic, and are acked, in the order sent", async () => {
    const a = await newUser();
    const r = room();
    const n = 200;
    for (let i = 1; i <= n; i++) a.ws.send({ op: "send", room: r, body: `m${i}`, ref: i });
    for (let i = 1; i <= n; i++) expect((await a.ws.op("ack", i)).seq).toBe(i);
    const bodies = c.logic.messages.get(`room:${r}`)!.map((m) => m.body);
    expect(bodies).toEqual(Array.from({ length: n }, (_, i) => `m${i + 1}`));
    const keys = c.logic.sendBatches.flat().filter((i) => i.room === r).map((i) => i.retryKey);
    expect(new Set(keys).size).toBe(n);
  });

  test("logic unreachable is UNAVAILABLE", async () => {
    const a = await newUser();
    c.logic.down = true;
    try {
      a.ws.send({ op: "send", room: room(), body: "x", ref: "u" });
      expect((await a.ws.op("error", "u")).code).toBe("UNAVAILABLE");
    } finally {
      c.logic.down = false;
    }
  });

  test("RATE_LIMITED replies are errors until too many in the window: then 4429", async () => {
    const a = await newUser();
    c.logic.limited.add(a.user.userId);
    for (let i = 0; i < LIMITS.rateLimitedPerWindow; i++) a.ws.send({ op: "send", room: "r", body: "x" });
    for (let i = 0; i < LIMITS.rateLimitedPerWindow; i++) expect((await a.ws.op("error")).code).toBe("RATE_LIMITED");
    a.ws.send({ op: "send", room: "r", body: "x" });
    expect((await a.ws.closed).code).toBe(CLOSE.ABUSE);
  });
});

describe("sync", () => {
  test("missing messages as msg frames in seq order, then synced", async () => {
    const a = await newUser();
    const r = room();
    for (let i = 1; i <= 5; i++) a.ws.send({ op: "send", room: r, body: `m${i}`, clientMsgId: `c${i}` });
    for (let i = 1; i <= 5; i++) await a.ws.op("ack");
    a.ws.send({ op: "sync", conv: `room:${r}`, afterSeq: 2, limit: 2, ref: "s" });
    const synced = await a.ws.op("synced", "s");
    expect(synced).toEqual({ op: "synced", ref: "s", conv: `room:${r}`, lastSeq: 4, hasMore: true });
    const msgs = a.ws.frames.filter((f) => f.op === "msg");
    expect(msgs.map((m) => m.seq)).toEqual([3, 4]);
    expect(msgs[0]).toEqual({ op: "msg", id: expect.any(String), conv: `room:${r}`, seq: 3, from: a.user, body: "m3", ts: expect.any(Number), clientMsgId: "c3" });
  });

  test("requests beyond maxInFlightPerConn are RATE_LIMITED at once; the connection carries on", async () => {
    const a = await newUser();
    const r = room();
    let open!: () => void;
    c.logic.gate = new Promise((res) => (open = res));
    const before = c.logic.historyReqs.length;
    const n = LIMITS.maxInFlightPerConn + 10;
    try {
      for (let i = 0; i < n; i++) a.ws.send({ op: "sync", conv: `room:${r}`, afterSeq: 0, ref: `s${i}` });
      await eventually(() => a.ws.frames.filter((f) => f.op === "error").length === 10);
      const errors = a.ws.frames.filter((f) => f.op === "error");
      expect(errors.map((f) => f.ref)).toEqual(Array.from({ length: 10 }, (_, i) => `s${LIMITS.maxInFlightPerConn + i}`));
      for (const e of errors) expect(e.code).toBe("RATE_LIMITED");
      expect(c.logic.historyReqs.length - before).toBe(LIMITS.maxInFlightPerConn);
      a.ws.send({ op: "ping", ref: "p" });
      await a.ws.op("pong", "p");
    } finally {
      open();
      c.logic.gate = undefined;
    }
    await eventually(() => a.ws.frames.filter((f) => f.op === "synced").length === LIMITS.maxInFlightPerConn);
    a.ws.send({ op: "sync", conv: `room:${r}`, afterSeq: 0, ref: "after" });
    await a.ws.op("synced", "after");
  });

  test("nothing new: synced with lastSeq = afterSeq; limit defaults to 100 and is clamped to 500", async () => {
    const a = await newUser("msgpack");
    const conv = `room:${room()}`;
    a.ws.send({ op: "sync", conv, afterSeq: 9, ref: 1 });
    expect(await a.ws.op("synced", 1)).toEqual({ op: "synced", ref: 1, conv, lastSeq: 9, hasMore: false });
    a.ws.send({ op: "sync", conv, afterSeq: 0, limit: 100_000, ref: 2 });
    await a.ws.op("synced", 2);
    const reqs = c.logic.historyReqs.filter((h) => h.conv === conv);
    expect(reqs.map((h) => [h.limit, h.maxLimit, h.userId])).toEqual([
      [LIMITS.syncDefaultLimit, LIMITS.syncMaxLimit, a.user.userId],
      [LIMITS.syncMaxLimit, LIMITS.syncMaxLimit, a.user.userId],
    ]);
  });
});

describe("registration", () => {
  test("registers wsUrl and the connection count, refreshed when it changes", async () => {
    const own = await startConnect({}, new FakeLogic());
    try {
      expect(own.discovery.infos[0]).toEqual({
        id: expect.stringMatching(/^connect-test-/),
        addr: own.server.rpcAddr,
        meta: { wsUrl: `ws://127.0.0.1:${own.server.port}/ws`, conns: 0, ready: true },
      });
      const { token } = own.logic.user();
      const ws = await WsClient.open(own.wsUrl(token));
      await eventually(() => own.discovery.latest?.meta?.conns === 1, 5000);
      await ws.closeAndWait();
      await eventually(() => own.discovery.latest?.meta?.conns === 0, 5000);
    } finally {
      await own.stop();
    }
    expect(own.discovery.closed).toBe(true);
  });

  test("until its registration is in etcd, upgrades are refused with 503 (task would skip an unregistered instance)", async () => {
    const logic = new FakeLogic();
    const discovery = new FakeDiscovery();
    let registered!: () => void;
    const held = new Promise<void>((res) => (registered = res));
    const register = discovery.register.bind(discovery);
    discovery.register = async (service, info) => {
      await held;
      return register(service, info);
    };
    const { config } = loadConfig({}, { host: "127.0.0.1", connectPort: 0, connectRpcPort: 0, metricsHost: "127.0.0.1", metricsPort: 0 });
    const server = new ConnectServer({ config, log: silentLogger, logic, discovery, instanceId: "connect-test-unregistered" });
    const started = server.start();
    try {
      await eventually(() => discovery.infos.length === 0 && server.port > 0, 5000, "listening");
      const { token } = logic.user();
      const res = await fetch(`http://127.0.0.1:${server.port}/ws?token=${token}`, { headers: { upgrade: "websocket", connection: "upgrade", "sec-websocket-version": "13", "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==" } });
      expect(res.status).toBe(503);
      expect(await res.json()).toEqual({ error: { code: "UNAVAILABLE", message: "server is registering" } });
      registered();
      await started;
      const ws = await WsClient.open(`ws://127.0.0.1:${server.port}/ws?token=${token}`);
      await ws.closeAndWait();
    } finally {
      registered();
      await started.catch(() => {});
      await server.stop();
    }
  });
});
