// Real-time messaging across tiers: 2 logic, 2 connect and 2 task instances in this process,
// against real Redis, MariaDB and etcd, with real WebSockets.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startCluster, type TestCluster } from "./support/cluster.ts";
import { WsClient } from "./support/connect.ts";
import { eventually, http, registerUser, uniqueName } from "./support/http.ts";

let c: TestCluster;
let base: string;
const clients: WsClient[] = [];
beforeAll(async () => {
  c = await startCluster({ logic: 2, api: 1, connect: 2, task: 2, config: { rateLimitPerSec: 1000, rateLimitBurst: 1000 } });
  base = c.apiUrl();
});
afterAll(async () => {
  for (const w of clients) w.ws.close();
  await c?.stop();
});

async function open(i: number, token: string, format?: "msgpack") {
  const w = await WsClient.open(c.wsUrl(i, token, format));
  clients.push(w);
  return w;
}

async function joined(w: WsClient, room: string) {
  w.send({ op: "join", room, ref: `j-${room}` });
  return w.op("joined", `j-${room}`);
}

describe("rooms across connect instances", () => {
  test("fan-out reaches every member on both instances, with presence and room info", async () => {
    const room = uniqueName("r");
    const [a, b, d] = await Promise.all([registerUser(base), registerUser(base), registerUser(base)]);
    const wa = await open(0, a.token);
    const wb = await open(1, b.token);
    const wd = await open(1, d.token, "msgpack");
    const ja = await joined(wa, room);
    expect(ja).toMatchObject({ op: "joined", room, conv: `room:${room}`, onlineCount: 1, lastSeq: 0 });
    const jb = await joined(wb, room);
    expect(jb.onlineCount).toBe(2);
    expect(await wa.op("presence")).toEqual({ op: "presence", room, onlineCount: 2, event: "join", user: { userId: b.userId, userName: b.userName } });
    await joined(wd, room);
    await wa.next((f) => f.op === "presence" && f.user.userId === d.userId);

    const info = await http(base, "GET", `/api/rooms/${room}`, { token: a.token });
    expect(info.body.onlineCount).toBe(3);
    expect(info.body.members.map((m: { userId: number }) => m.userId).sort((x: number, y: number) => x - y)).toEqual(
      [a.userId, b.userId, d.userId].sort((x, y) => x - y),
    );

    wb.send({ op: "send", room, body: "hello all", ref: "s1" });
    const ack = await wb.op("ack", "s1");
    expect(ack).toMatchObject({ conv: `room:${room}`, seq: 1 });
    for (const w of [wa, wb, wd]) {
      const m = await w.op("msg");
      expect(m).toEqual({ op: "msg", id: ack.id, conv: `room:${room}`, seq: 1, from: { userId: b.userId, userName: b.userName }, body: "hello all", ts: ack.ts });
    }
    expect(wd.kinds.every((k) => k === "binary")).toBe(true);

    // An HTTP send is delivered live too.
    const viaHttp = await http(base, "POST", `/api/rooms/${room}/messages`, { token: d.token, body: { body: "from http" } });
    expect(viaHttp.status).toBe(202);
    expect((await wa.op("msg")).seq).toBe(2);

    // Leaving: the user's last connection leaving sends presence leave to the others.
    wd.send({ op: "leave", room, ref: "l" });
    expect(await wd.op("left", "l")).toEqual({ op: "left", room, ref: "l" });
    expect(await wa.next((f) => f.op === "presence" && f.event === "leave")).toMatchObject({ onlineCount: 2, user: { userId: d.userId } });
    // Closing a socket counts as leaving.
    wb.ws.close();
    expect(await wa.next((f) => f.op === "presence" && f.event === "leave")).toMatchObject({ onlineCount: 1, user: { userId: b.userId } });
    await eventually(async () => (await http(base, "GET", `/api/rooms/${room}`, { token: a.token })).body.onlineCount === 1);
  });

  test("a connect instance that newly joins a busy room gets the very next message (task's cached route is dropped)", async () => {
    const room = uniqueName("c");
    const [a, b] = await Promise.all([registerUser(base), registerUser(base)]);
    const wa = await open(0, a.token);
    await joined(wa, room);
    // Traffic while only instance 0 holds the room: the task worker caches the route room → [0].
    for (let i = 1; i <= 3; i++) {
      wa.send({ op: "send", room, body: `before ${i}`, ref: `b${i}` });
      expect((await wa.op("msg")).seq).toBe(i);
    }
    const wb = await open(1, b.token);
    expect(await joined(wb, room)).toMatchObject({ lastSeq: 3 });
    wa.send({ op: "send", room, body: "right after the join", ref: "after" });
    expect(await wb.op("msg", undefined, 5000)).toMatchObject({ seq: 4, body: "right after the join" });
  });

  test("200 messages fired without waiting arrive at a client on another instance in seq order, no gaps", async () => {
    const room = uniqueName("o");
    const [s, r] = await Promise.all([registerUser(base), registerUser(base)]);
    const ws = await open(0, s.token);
    const wr = await open(1, r.token);
    await joined(ws, room);
    await joined(wr, room);
    for (let i = 0; i < 200; i++) ws.send({ op: "send", room, body: `n${i}`, ref: i });
    const got = [];
    for (let i = 0; i < 200; i++) got.push(await wr.op("msg", undefined, 10_000));
    expect(got.map((m) => m.seq)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
    // Sends on one connection get seqs in the order they were sent.
    expect(got.map((m) => m.body)).toEqual(Array.from({ length: 200 }, (_, i) => `n${i}`));
  });
});

describe("direct messages", () => {
  test("reach every connection of both users, on different instances", async () => {
    const [a, b] = await Promise.all([registerUser(base), registerUser(base)]);
    const a0 = await open(0, a.token);
    const a1 = await open(1, a.token);
    const b0 = await open(0, b.token);
    const b1 = await open(1, b.token, "msgpack");
    await Bun.sleep(0);
    a0.send({ op: "send", toUserId: b.userId, body: "psst", ref: "d" });
    const ack = await a0.op("ack", "d");
    expect(ack.conv).toBe(`dm:${Math.min(a.userId, b.userId)}:${Math.max(a.userId, b.userId)}`);
    for (const w of [a0, a1, b0, b1]) expect(await w.op("msg")).toMatchObject({ id: ack.id, seq: 1, body: "psst", from: { userId: a.userId } });
    // Over HTTP too, and to an unknown user it is NOT_FOUND.
    await http(base, "POST", `/api/users/${a.userId}/messages`, { token: b.token, body: { body: "back" } });
    for (const w of [a0, a1, b0, b1]) expect((await w.op("msg")).body).toBe("back");
    a0.send({ op: "send", toUserId: 999999999, body: "?", ref: "x" });
    expect(await a0.op("error", "x")).toMatchObject({ code: "NOT_FOUND" });
  });
});

describe("robustness", () => {
  test("malformed frames get BAD_REQUEST while the connection and other users carry on", async () => {
    const room = uniqueName("m");
    const [a, b] = await Promise.all([registerUser(base), registerUser(base)]);
    const wa = await open(0, a.token);
    const wb = await open(1, b.token);
    await joined(wa, room);
    await joined(wb, room);
    for (const bad of ["{nope", "[1,2]", "42", JSON.stringify({ op: "dance" }), JSON.stringify({ op: "send", room }), JSON.stringify({ op: "join", room: "bad room" })]) {
      wa.raw(bad);
      expect((await wa.op("error")).code).toBe("BAD_REQUEST");
    }
    wa.raw(new Uint8Array([0xc1, 0xff, 0x00]));
    expect((await wa.op("error")).code).toBe("BAD_REQUEST");
    wa.send({ op: "send", room, body: "still here", ref: "ok" });
    await wa.op("ack", "ok");
    expect((await wb.op("msg")).body).toBe("still here");
    expect(wb.all.some((f) => f.op === "error")).toBe(false);
  });

  test("revoking a token closes its sockets with 4401 and leaves the user's other sessions open", async () => {
    const u = await registerUser(base);
    const other = await http(base, "POST", "/api/sessions", { body: { userName: u.userName, password: "correct-horse-1" } });
    const w1 = await open(0, u.token);
    const w2 = await open(1, u.token);
    const keep = await open(1, other.body.token);
    expect((await http(base, "DELETE", "/api/sessions/current", { token: u.token })).status).toBe(204);
    expect((await w1.closed).code).toBe(4401);
    expect((await w2.closed).code).toBe(4401);
    keep.send({ op: "ping", ref: 1 });
    expect(await keep.op("pong", 1)).toMatchObject({ op: "pong", ref: 1 });
    await expect(WsClient.open(c.wsUrl(0, u.token))).rejects.toThrow();
  });

  test("sync returns what was missed, in seq order; clientMsgId retries over WS and HTTP agree", async () => {
    const room = uniqueName("y");
    const u = await registerUser(base);
    for (let i = 1; i <= 5; i++) await http(base, "POST", `/api/rooms/${room}/messages`, { token: u.token, body: { body: `b${i}` } });
    const w = await open(1, u.token);
    w.send({ op: "sync", conv: `room:${room}`, afterSeq: 2, ref: "s" });
    const msgs = [await w.op("msg"), await w.op("msg"), await w.op("msg")];
    expect(msgs.map((m) => m.seq)).toEqual([3, 4, 5]);
    expect(await w.op("synced", "s")).toEqual({ op: "synced", ref: "s", conv: `room:${room}`, lastSeq: 5, hasMore: false });

    const viaHttp = await http(base, "POST", `/api/rooms/${room}/messages`, { token: u.token, body: { body: "once", clientMsgId: "k1" } });
    w.send({ op: "send", room, body: "once again", clientMsgId: "k1", ref: "r" });
    const viaWs = await w.op("ack", "r");
    expect({ id: viaWs.id, seq: viaWs.seq, ts: viaWs.ts }).toEqual({ id: viaHttp.body.id, seq: viaHttp.body.seq, ts: viaHttp.body.ts });
    const h = await http(base, "GET", `/api/conversations/room:${room}/messages`, { token: u.token });
    expect(h.body.messages.map((m: { seq: number }) => m.seq)).toEqual([1, 2, 3, 4, 5, 6]);
  });
});

describe("safe retries", () => {
  test("the same clientMsgId sent concurrently over WS and HTTP is accepted once", async () => {
    const room = uniqueName("i");
    const u = await registerUser(base);
    const w0 = await open(0, u.token);
    const w1 = await open(1, u.token, "msgpack");
    for (let i = 0; i < 10; i++) {
      w0.send({ op: "send", room, body: `ws0-${i}`, clientMsgId: "same", ref: `a${i}` });
      w1.send({ op: "send", room, body: `ws1-${i}`, clientMsgId: "same", ref: `b${i}` });
    }
    const viaHttp = await Promise.all(
      Array.from({ length: 10 }, (_, i) => http(base, "POST", `/api/rooms/${room}/messages`, { token: u.token, body: { body: `h${i}`, clientMsgId: "same" } })),
    );
    const acks = [
      ...(await Promise.all(Array.from({ length: 10 }, (_, i) => w0.op("ack", `a${i}`)))),
      ...(await Promise.all(Array.from({ length: 10 }, (_, i) => w1.op("ack", `b${i}`)))),
      ...viaHttp.map((r) => r.body),
    ];
    expect(new Set(acks.map((a) => `${a.id}|${a.seq}|${a.ts}|${a.conv}`)).size).toBe(1);
    expect(acks[0].seq).toBe(1);
    const h = await http(base, "GET", `/api/conversations/room:${room}/messages`, { token: u.token });
    expect(h.body.messages.length).toBe(1);
    expect(h.body.messages[0].clientMsgId).toBe("same");
  });
});

describe("persistence", () => {
  test("accepted messages reach MySQL exactly once", async () => {
    const room = uniqueName("p");
    const u = await registerUser(base);
    const acks = [];
    for (let i = 0; i < 20; i++) acks.push((await http(base, "POST", `/api/rooms/${room}/messages`, { token: u.token, body: { body: `p${i}` } })).body);
    const rows = await eventually(async () => {
      const [r] = await c.db.pool.query("SELECT id, seq FROM messages WHERE conv = ? ORDER BY seq", [`room:${room}`]);
      const list = r as { id: string; seq: number }[];
      return list.length === 20 ? list : undefined;
    });
    expect(rows.map((r) => String(r.id))).toEqual(acks.map((a) => a.id));
    expect(rows.map((r) => Number(r.seq))).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
  });
});
