// Connect tier: ConnectRPC push fan-out (rooms, users, presence, kicks), heartbeats, token
// expiry, slow readers and graceful stop, over real WebSockets and a real gRPC client.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { connect as tcpConnect } from "node:net";
import { CLOSE, type Message, type UserRef } from "../src/shared/protocol.ts";
import type { PushEvent } from "../proto/connect.ts";
import { eventually } from "./support/http.ts";
import { WsClient, joinRoom as join, startConnect, type TestConnect } from "./support/connect.ts";

let c: TestConnect;
const clients: WsClient[] = [];

beforeAll(async () => {
  c = await startConnect();
});
afterAll(async () => {
  for (const cl of clients) cl.ws.close();
  await c.stop();
});

async function open(t: TestConnect, token: string, format?: "json" | "msgpack"): Promise<WsClient> {
  const cl = await WsClient.open(t.wsUrl(token, format));
  clients.push(cl);
  return cl;
}


let n = 0;
const room = () => `push-${++n}`;
const msg = (conv: string, from: UserRef, seq: number): Message => ({ id: String(9000 + seq), conv, seq, from, body: `b${seq}`, ts: Date.now() });
const push = (events: PushEvent[]) => c.rpc.push({ events });

describe("push", () => {
  test("room messages reach every local joined connection, in both formats, in order", async () => {
    const r = room();
    const a = c.logic.user();
    const b = c.logic.user();
    const [a1, b1, b2, outsider] = [
      await open(c, a.token),
      await open(c, b.token, "msgpack"),
      await open(c, b.token),
      await open(c, c.logic.user().token),
    ];
    for (const ws of [a1, b1, b2]) await join(ws, r);
    const conv = `room:${r}`;
    await push([1, 2, 3].map((seq) => ({ t: "m", room: r, msg: msg(conv, a.user, seq) })));
    for (const ws of [a1, b1, b2]) {
      for (const seq of [1, 2, 3]) expect(await ws.op("msg")).toEqual({ op: "msg", ...msg(conv, a.user, seq), ts: expect.any(Number) });
    }
    expect(b1.kinds.at(-1)).toBe("binary");
    await outsider.flush();
    expect(outsider.all.filter((f) => f.op === "msg")).toHaveLength(0);
  });

  test("a room with no local connection is a no-op; after leave nothing arrives", async () => {
    const r = room();
    const a = c.logic.user();
    const ws = await open(c, a.token);
    await join(ws, r);
    ws.send({ op: "leave", room: r, ref: "l" });
    await ws.op("left", "l");
    await push([{ t: "m", room: r, msg: msg(`room:${r}`, a.user, 1) }, { t: "m", room: room(), msg: msg("room:x", a.user, 1) }]);
    await ws.flush();
    expect(ws.all.filter((f) => f.op === "msg")).toHaveLength(0);
  });

  test("user messages reach all connections of the listed users once, joined or not", async () => {
    const a = c.logic.user();
    const b = c.logic.user();
    const other = c.logic.user();
    const [a1, b1, b2, o1] = [await open(c, a.token), await open(c, b.token), await open(c, b.token, "msgpack"), await open(c, other.token)];
    const conv = `dm:${a.user.userId}:${b.user.userId}`;
    await push([{ t: "m", users: [a.user.userId, b.user.userId, a.user.userId], msg: msg(conv, a.user, 1) }]);
    for (const ws of [a1, b1, b2]) expect((await ws.op("msg")).conv).toBe(conv);
    for (const ws of [a1, o1]) await ws.flush();
    expect(a1.all.filter((f) => f.op === "msg")).toHaveLength(1);
    expect(o1.all.filter((f) => f.op === "msg")).toHaveLength(0);
  });

  test("presence goes to the room's other users' connections, not to the user's own", async () => {
    const r = room();
    const a = c.logic.user();
    const b = c.logic.user();
    const [a1, a2, b1, b2] = [await open(c, a.token), await open(c, a.token, "msgpack"), await open(c, b.token, "msgpack"), await open(c, b.token)];
    for (const ws of [a1, a2, b1]) await join(ws, r); // b2 is not in the room
    const p = { room: r, onlineCount: 2, event: "join" as const, user: a.user };
    await push([{ t: "p", p }]);
    expect(await b1.op("presence")).toEqual({ op: "presence", ...p });
    for (const ws of [a1, a2, b2]) await ws.flush();
    for (const ws of [a1, a2, b2]) expect(ws.all.filter((f) => f.op === "presence")).toHaveLength(0);
  });

  test("a kick closes that session's connections with 4401, not the user's other sessions", async () => {
    const a = c.logic.user();
    const other = c.logic.session(a.user);
    const [k1, k2, stay] = [await open(c, a.token), await open(c, a.token), await open(c, other.token)];
    await push([{ t: "k", userId: a.user.userId, sid: a.sid }]);
    expect((await k1.closed).code).toBe(CLOSE.TOKEN_REVOKED);
    expect((await k2.closed).code).toBe(CLOSE.TOKEN_REVOKED);
    await stay.flush();
  });

  test("a bad event in a batch is skipped; the rest still apply", async () => {
    const a = c.logic.user();
    const ws = await open(c, a.token);
    const conv = `dm:${a.user.userId}:${a.user.userId}`;
    await push([{ t: "z" } as unknown as PushEvent, { t: "m", users: [a.user.userId], msg: msg(conv, a.user, 1) }]);
    expect((await ws.op("msg")).seq).toBe(1);
  });

  test("a reader that stops reading is closed once wsMaxBuffered is exceeded", async () => {
    const t = await startConnect({ wsMaxBuffered: 64 * 1024 });
    try {
      const a = t.logic.user();
      const sock = tcpConnect(t.server.port, "127.0.0.1");
      await new Promise((res) => sock.once("connect", res));
      sock.write(
        `GET /ws?token=${a.token} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      );
      sock.pause(); // never reads: the kernel buffers fill, then Bun's
      await eventually(() => t.server.connections === 1, 5000);
      const conv = `dm:${a.user.userId}:${a.user.userId}`;
      const big = { ...msg(conv, a.user, 1), body: "x".repeat(4000) };
      for (let i = 0; i < 400 && t.server.connections; i++)
        await t.rpc.push({ events: Array.from({ length: 50 }, () => ({ t: "m" as const, users: [a.user.userId], msg: big })) });
      expect(t.server.connections).toBe(0);
      expect(await (await fetch(`http://127.0.0.1:${t.server.metricsPort}/metrics`)).text()).toMatch(/bunchat_connect_closes_total\{[^}]*code="4429"[^}]*\} 1/);
      sock.destroy();
    } finally {
      await t.stop();
    }
  });
});

describe("heartbeat and expiry", () => {
  test("a connection silent past idleTimeoutMs is closed with 4408", async () => {
    const t = await startConnect({ pingIntervalMs: 60_000, idleTimeoutMs: 300 });
    try {
      const ws = await open(t, t.logic.user().token);
      const started = Date.now();
      expect((await ws.closed).code).toBe(CLOSE.HEARTBEAT_TIMEOUT);
      expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    } finally {
      await t.stop();
    }
  });

  test("frames keep a connection alive", async () => {
    const t = await startConnect({ pingIntervalMs: 60_000, idleTimeoutMs: 300 });
    try {
      const ws = await open(t, t.logic.user().token);
      for (let i = 0; i < 8; i++) {
        await Bun.sleep(100); // spacing the client's own frames over 800 ms, past the idle timeout
        await ws.flush();
      }
    } finally {
      await t.stop();
    }
  });

  test("server pings keep a client that answers them alive; an expired token closes with 4401", async () => {
    const t = await startConnect({ pingIntervalMs: 100, idleTimeoutMs: 400 });
    try {
      const ws = await open(t, t.logic.user().token);
      const exp = t.logic.user("soon", Date.now() + 1200);
      const expiring = await open(t, exp.token);
      expect((await expiring.closed).code).toBe(CLOSE.TOKEN_REVOKED);
      // By now over 1 s has passed without a client frame: only pongs kept ws open.
      await ws.flush();
    } finally {
      await t.stop();
    }
  });
});

describe("stop", () => {
  test("deregisters, closes every socket with 1012 and sends their leave/disconnect ops", async () => {
    const t = await startConnect();
    const a = t.logic.user();
    const r = room();
    const [w1, w2] = [await open(t, a.token), await open(t, t.logic.user().token, "msgpack")];
    await join(w1, r);
    const started = Date.now();
    await t.stop();
    expect(Date.now() - started).toBeLessThan(3000);
    expect(t.discovery.closed).toBe(true);
    expect((await w1.closed).code).toBe(CLOSE.RESTARTING);
    expect((await w2.closed).code).toBe(CLOSE.RESTARTING);
    const ops = t.logic.presenceOps.filter((o) => o.user.userId === a.user.userId).map((o) => o.k);
    expect(ops).toEqual(["connect", "join", "leave", "disconnect"]);
    expect(t.logic.members.get(r)?.size ?? 0).toBe(0);
    expect((await fetch(`${t.http}/healthz`).catch(() => null))?.status).not.toBe(200);
  });
});
