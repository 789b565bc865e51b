// (v1.1) Read positions, unread counts, typing and user look-up against the real tiers (logic,
// task, api, two connect instances, real Redis, MariaDB and etcd). Every user has connections on
// both instances, so each push crosses instances.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { and, eq } from "drizzle-orm";
import Redis from "ioredis";
import { readPositions } from "../src/shared/db/schema.ts";
import { partitionOf, redisKeys } from "../src/shared/keys.ts";
import { dmConv } from "../src/shared/protocol.ts";
import { startCluster, type TestCluster } from "./support/cluster.ts";
import { WsClient } from "./support/connect.ts";
import { eventually, http, registerUser } from "./support/http.ts";

let c: TestCluster;
let redis: Redis;
const clients: WsClient[] = [];

beforeAll(async () => {
  c = await startCluster({ logic: 1, api: 1, connect: 2, task: 1, config: { rateLimitPerSec: 1000, rateLimitBurst: 1000 } });
  redis = new Redis(c.config.redisUrl);
});

afterAll(async () => {
  for (const cl of clients) cl.ws.close();
  redis?.disconnect();
  await c?.stop();
});

type User = Awaited<ReturnType<typeof registerUser>>;

async function open(i: number, u: User, format?: "msgpack"): Promise<WsClient> {
  const cl = await WsClient.open(c.wsUrl(i, u.token, format));
  clients.push(cl);
  return cl;
}

const api = (method: string, path: string, token?: string, body?: unknown) => http(c.apiUrl(), method, path, { token, body });
const room = () => `rt-${crypto.randomUUID().slice(0, 8)}`;
const conversations = async (u: User) => (await api("GET", "/api/conversations", u.token)).body.conversations as any[];
const entry = async (u: User, conv: string) => (await conversations(u)).find((x) => x.conv === conv);

async function joinAll(r: string, ...wss: WsClient[]) {
  for (const ws of wss) {
    const ref = `j-${crypto.randomUUID()}`;
    ws.send({ op: "join", room: r, ref });
    await ws.op("joined", ref, 10_000);
  }
}

/** Drops every frame received so far (after a round trip, so earlier pushes in flight on that socket are in). */
async function drain(...wss: WsClient[]) {
  for (const ws of wss) {
    await ws.flush();
    ws.frames.length = 0;
  }
}

describe("read positions", () => {
  test("WS and HTTP read move readSeq as max(readSeq, min(seq, lastSeq)); pushes reach only the user's other connections, on both instances", async () => {
    const a = await registerUser(c.apiUrl());
    const b = await registerUser(c.apiUrl());
    const r = room();
    const conv = `room:${r}`;
    const a0 = await open(0, a);
    const a1 = await open(1, a, "msgpack");
    const b1 = await open(1, b);
    await joinAll(r, a0, a1, b1);
    // Joining adds the room to A's list but does not move readSeq.
    expect(await entry(a, conv)).toEqual({ conv, lastSeq: 0, lastTs: null, readSeq: 0, unread: 0 });
    for (let i = 1; i <= 3; i++) expect((await api("POST", `/api/rooms/${r}/messages`, b.token, { body: `m${i}` })).status).toBe(202);
    expect(await entry(a, conv)).toMatchObject({ lastSeq: 3, readSeq: 0, unread: 3 });
    // B's own sends moved B's readSeq.
    expect(await entry(b, conv)).toMatchObject({ lastSeq: 3, readSeq: 3, unread: 0 });
    await drain(a0, a1, b1);

    a0.send({ op: "read", conv, seq: 2, ref: "r1" });
    expect(await a0.op("read", "r1", 10_000)).toEqual({ op: "read", ref: "r1", conv, readSeq: 2 });
    expect(await a1.op("read", undefined, 10_000)).toEqual({ op: "read", conv, readSeq: 2 });

    // Above lastSeq is clamped; over HTTP every connection of A gets the push.
    const put = await api("PUT", `/api/conversations/${encodeURIComponent(conv)}/read`, a.token, { seq: 99 });
    expect(put).toEqual({ status: 200, body: { conv, readSeq: 3 } });
    for (const ws of [a0, a1]) expect(await ws.op("read", undefined, 10_000)).toEqual({ op: "read", conv, readSeq: 3 });

    // Lower or equal: unchanged, and no push (the next push A's connections get is the next change).
    expect((await api("PUT", `/api/conversations/${conv}/read`, a.token, { seq: 1 })).body).toEqual({ conv, readSeq: 3 });
    a1.send({ op: "read", conv, seq: 3, ref: 7 });
    expect(await a1.op("read", 7, 10_000)).toEqual({ op: "read", ref: 7, conv, readSeq: 3 });
    expect(await entry(a, conv)).toMatchObject({ lastSeq: 3, readSeq: 3, unread: 0 });

    // A's own send moves A's readSeq to its seq, with no read push of its own.
    expect((await api("POST", `/api/rooms/${r}/messages`, b.token, { body: "m4" })).status).toBe(202);
    expect((await api("POST", `/api/rooms/${r}/messages`, a.token, { body: "m5" })).body.seq).toBe(5);
    expect(await entry(a, conv)).toMatchObject({ lastSeq: 5, readSeq: 5, unread: 0 });
    expect(await entry(b, conv)).toMatchObject({ lastSeq: 5, readSeq: 4, unread: 1 });
    a1.send({ op: "read", conv, seq: 0, ref: "z" });
    await a1.op("read", "z", 10_000);
    b1.send({ op: "read", conv, seq: 5, ref: "b" });
    expect(await b1.op("read", "b", 10_000)).toMatchObject({ readSeq: 5 });
    // A room read sends no receipt to anyone else: B's change reached no connection of A.
    await Bun.sleep(300);
    await drain(b1);
    for (const ws of [a0, a1]) {
      await ws.flush();
      expect(ws.frames.filter((f) => f.op === "read" || f.op === "receipt")).toEqual([]);
    }
  });

  test("a WS room read of a user with one connection appends no stream event; once a second is open, it gets the push", async () => {
    const a = await registerUser(c.apiUrl());
    const b = await registerUser(c.apiUrl());
    const r = room();
    const conv = `room:${r}`;
    for (let i = 0; i < 2; i++) await api("POST", `/api/rooms/${r}/messages`, b.token, { body: "x" });
    const keys = redisKeys(c.config.redisPrefix);
    const connections = async () => (await redis.hvals(keys.userInstances(a.userId))).reduce((n, v) => n + Number(v), 0);
    const readEvents = async () => {
      const entries = await redis.xrange(keys.stream(partitionOf(conv, c.config.streamPartitions)), "-", "+");
      return entries.filter(([, f]) => f[3].includes('"t":"rd"') && f[3].includes(`"userId":${a.userId},`)).length;
    };
    const a0 = await open(0, a);
    await eventually(async () => (await connections()) === 1, 10_000, "A's connection counted");
    a0.send({ op: "read", conv, seq: 1, ref: 1 });
    expect(await a0.op("read", 1, 10_000)).toMatchObject({ readSeq: 1 });
    expect(await readEvents()).toBe(0);
    const a1 = await open(1, a);
    await eventually(async () => (await connections()) === 2, 10_000, "A's second connection counted");
    a0.send({ op: "read", conv, seq: 2, ref: 2 });
    expect(await a0.op("read", 2, 10_000)).toMatchObject({ readSeq: 2 });
    expect(await a1.op("read", undefined, 10_000)).toEqual({ op: "read", conv, readSeq: 2 });
    expect(await readEvents()).toBe(1);
  });

  test("marking a room read adds it to the user's conversations", async () => {
    const a = await registerUser(c.apiUrl());
    const b = await registerUser(c.apiUrl());
    const r = room();
    for (let i = 0; i < 2; i++) await api("POST", `/api/rooms/${r}/messages`, b.token, { body: "x" });
    expect(await entry(a, `room:${r}`)).toBeUndefined();
    expect((await api("PUT", `/api/conversations/room:${r}/read`, a.token, { seq: 1 })).body).toEqual({ conv: `room:${r}`, readSeq: 1 });
    expect(await entry(a, `room:${r}`)).toMatchObject({ lastSeq: 2, readSeq: 1, unread: 1 });
  });

  test("a DM: peer in the list, receipt to the other user's connections on the other instance, 403 for a third user, none for a note to self", async () => {
    const a = await registerUser(c.apiUrl());
    const b = await registerUser(c.apiUrl());
    const x = await registerUser(c.apiUrl());
    const conv = dmConv(a.userId, b.userId);
    const a0 = await open(0, a);
    const a1 = await open(1, a);
    const b1 = await open(1, b, "msgpack");
    const b0 = await open(0, b);
    for (const body of ["one", "two"]) expect((await api("POST", `/api/users/${a.userId}/messages`, b.token, { body })).status).toBe(202);
    expect(await entry(a, conv)).toEqual({ conv, lastSeq: 2, lastTs: expect.any(Number), readSeq: 0, unread: 2, peer: { userId: b.userId, userName: b.userName } });
    expect(await entry(b, conv)).toMatchObject({ readSeq: 2, unread: 0, peer: { userId: a.userId, userName: a.userName } });
    await drain(a0, a1, b0, b1);

    a0.send({ op: "read", conv, seq: 1, ref: "r" });
    expect(await a0.op("read", "r", 10_000)).toMatchObject({ readSeq: 1 });
    expect(await a1.op("read", undefined, 10_000)).toEqual({ op: "read", conv, readSeq: 1 });
    for (const ws of [b0, b1]) expect(await ws.op("receipt", undefined, 10_000)).toEqual({ op: "receipt", conv, user: { userId: a.userId, userName: a.userName }, readSeq: 1 });
    expect((await api("PUT", `/api/conversations/${encodeURIComponent(conv)}/read`, a.token, { seq: 2 })).body).toEqual({ conv, readSeq: 2 });
    for (const ws of [b0, b1]) expect(await ws.op("receipt", undefined, 10_000)).toMatchObject({ readSeq: 2 });

    // Someone else's DM.
    expect((await api("PUT", `/api/conversations/${conv}/read`, x.token, { seq: 1 })).status).toBe(403);
    const x0 = await open(0, x);
    x0.send({ op: "read", conv, seq: 1, ref: "no" });
    expect(await x0.op("error", "no", 10_000)).toMatchObject({ code: "FORBIDDEN" });

    // A note to self: peer is oneself; reading it pushes read to the other connections, no receipt.
    const self = dmConv(a.userId, a.userId);
    expect((await api("POST", `/api/users/${a.userId}/messages`, a.token, { body: "memo" })).status).toBe(202);
    expect(await entry(a, self)).toMatchObject({ lastSeq: 1, readSeq: 1, unread: 0, peer: { userId: a.userId, userName: a.userName } });
    await drain(a0, a1, b0, b1);
    expect((await api("PUT", `/api/conversations/${self}/read`, a.token, { seq: 0 })).body).toEqual({ conv: self, readSeq: 1 });
    // Another DM change of A afterwards proves, by stream order, that nothing was pushed for the no-op.
    expect((await api("POST", `/api/users/${a.userId}/messages`, b.token, { body: "three" })).status).toBe(202);
    expect((await api("PUT", `/api/conversations/${conv}/read`, a.token, { seq: 3 })).body.readSeq).toBe(3);
    for (const ws of [b0, b1]) expect(await ws.op("receipt", undefined, 10_000)).toMatchObject({ readSeq: 3 });
    for (const ws of [a0, a1]) expect(await ws.op("read", undefined, 10_000)).toEqual({ op: "read", conv, readSeq: 3 });
    for (const ws of [a0, a1, b0, b1]) expect(ws.frames.filter((f) => f.op === "receipt" || (f.op === "read" && f.conv === self))).toEqual([]);
  });

  test("pushes carry the name logic has on record, not the one a caller sends", async () => {
    const a = await registerUser(c.apiUrl());
    const b = await registerUser(c.apiUrl());
    const conv = dmConv(a.userId, b.userId);
    await api("POST", `/api/users/${b.userId}/messages`, a.token, { body: "hi" });
    await api("POST", `/api/users/${a.userId}/messages`, b.token, { body: "hello" });
    const b1 = await open(1, b);
    const logic = c.logic[0].api();
    const [res] = await logic.markRead({ items: [{ user: { userId: a.userId, userName: "impostor" }, conv, seq: 2 }] });
    expect(res).toEqual({ ok: { conv, readSeq: 2 } });
    expect(await b1.op("receipt", undefined, 10_000)).toEqual({ op: "receipt", conv, user: { userId: a.userId, userName: a.userName }, readSeq: 2 });
    await logic.typing({ user: { userId: a.userId, userName: "impostor" }, conv });
    expect(await b1.op("typing", undefined, 10_000)).toEqual({ op: "typing", conv, user: { userId: a.userId, userName: a.userName } });
    const [unknown] = await logic.markRead({ items: [{ user: { userId: 9_999_999, userName: "x" }, conv: "room:r", seq: 1 }] });
    expect(unknown.err?.code).toBe("UNAUTHENTICATED");
  });

    test("bad input is BAD_REQUEST over HTTP and WS, and the connection stays usable", async () => {
    const a = await registerUser(c.apiUrl());
    for (const body of [{ seq: -1 }, { seq: 1.5 }, { seq: "2" }, {}, { seq: 2 ** 60 }, { seq: null }])
      expect({ body, status: (await api("PUT", "/api/conversations/room:ok/read", a.token, body)).status }).toEqual({ body, status: 400 });
    for (const conv of ["room:bad%20room", "dm:2:1", "dm:0:1", "room:", "%ED%A0%80", "dm%253A1%253A2", "room:%F0%9F%98%80"])
      expect({ conv, status: (await api("PUT", `/api/conversations/${conv}/read`, a.token, { seq: 1 })).status }).toEqual({ conv, status: 400 });
    expect((await api("PUT", "/api/conversations/room:ok/read", undefined, { seq: 1 })).status).toBe(401);
    const raw = await http(c.apiUrl(), "PUT", "/api/conversations/room:ok/read", { token: a.token, raw: "seq=1", headers: { "content-type": "text/plain" } });
    expect(raw.status).toBe(400);

    const ws = await open(0, a, "msgpack");
    const bad = [
      { op: "read", conv: "room:ok", seq: -1 },
      { op: "read", conv: "room:ok", seq: 1.5 },
      { op: "read", conv: "room:ok" },
      { op: "read", conv: "room:\ud800", seq: 1 },
      { op: "read", conv: 5, seq: 1 },
      { op: "typing", conv: "room:\ud800" },
      { op: "typing", conv: "dm:3:2" },
      { op: "typing" },
    ];
    for (const [i, f] of bad.entries()) {
      ws.send({ ...f, ref: i }, true);
      expect(await ws.op("error", i, 10_000)).toMatchObject({ code: "BAD_REQUEST" });
    }
    ws.send({ op: "read", conv: "room:ok", seq: 0, ref: "ok" }, true);
    expect(await ws.op("read", "ok", 10_000)).toEqual({ op: "read", ref: "ok", conv: "room:ok", readSeq: 0 });
  });

  test("read positions are written behind to MySQL and rebuilt from it when Redis lost them", async () => {
    const a = await registerUser(c.apiUrl());
    const b = await registerUser(c.apiUrl());
    const r = room();
    const conv = `room:${r}`;
    for (let i = 0; i < 4; i++) await api("POST", `/api/rooms/${r}/messages`, b.token, { body: "x" });
    await api("PUT", `/api/conversations/${conv}/read`, a.token, { seq: 3 });
    const dm = dmConv(a.userId, b.userId);
    expect((await api("POST", `/api/users/${b.userId}/messages`, a.token, { body: "own send" })).status).toBe(202);
    const row = (convId: string) =>
      c.db.db
        .select({ readSeq: readPositions.readSeq })
        .from(readPositions)
        .where(and(eq(readPositions.userId, a.userId), eq(readPositions.conv, convId)));
    await eventually(async () => (await row(conv))[0]?.readSeq === 3, 15_000, "room read position in MySQL");
    await eventually(async () => (await row(dm))[0]?.readSeq === 1, 15_000, "own-send read position in MySQL");

    // Redis loses A's positions (as after a restart without persistence): rebuilt from MySQL.
    const keys = redisKeys(c.config.redisPrefix);
    expect(await redis.del(keys.readSeqs(a.userId))).toBe(1);
    expect(await entry(a, conv)).toMatchObject({ lastSeq: 4, readSeq: 3, unread: 1 });
    expect(await entry(a, dm)).toMatchObject({ readSeq: 1, unread: 0 });
    // And they keep only growing: a lower mark changes nothing.
    expect((await api("PUT", `/api/conversations/${conv}/read`, a.token, { seq: 2 })).body.readSeq).toBe(3);
    expect((await api("PUT", `/api/conversations/${conv}/read`, a.token, { seq: 4 })).body.readSeq).toBe(4);
    await eventually(async () => (await row(conv))[0]?.readSeq === 4, 15_000, "new read position in MySQL");
  });
});

describe("typing", () => {
  test("relayed across instances to the room's other users, once per 2 s per user, never to the typer, never synced", async () => {
    const a = await registerUser(c.apiUrl());
    const b = await registerUser(c.apiUrl());
    const d = await registerUser(c.apiUrl());
    const r = room();
    const conv = `room:${r}`;
    const a0 = await open(0, a);
    const a1 = await open(1, a);
    const b1 = await open(1, b, "msgpack");
    const d0 = await open(0, d);
    await joinAll(r, a0, a1, b1, d0);
    await drain(a0, a1, b1, d0);

    const t0 = performance.now();
    a0.send({ op: "typing", conv, ref: "t" });
    const want = { op: "typing", conv, user: { userId: a.userId, userName: a.userName } };
    expect(await b1.op("typing", undefined, 10_000)).toEqual(want);
    const latencyMs = performance.now() - t0;
    expect(await d0.op("typing", undefined, 10_000)).toEqual(want);
    // Again at once, from both of A's connections: gated (per connection, and per user across instances).
    a0.send({ op: "typing", conv });
    a1.send({ op: "typing", conv });
    await Bun.sleep(300);
    d0.send({ op: "typing", conv });
    expect(await b1.op("typing", undefined, 10_000)).toMatchObject({ user: { userId: d.userId } });
    expect(b1.frames.filter((f) => f.op === "typing")).toEqual([]);
    // Never to A's own connections (only D's typing reached them), and no reply to a valid typing.
    for (const ws of [a0, a1]) {
      expect(await ws.op("typing", undefined, 10_000)).toMatchObject({ user: { userId: d.userId } });
      await ws.flush();
      expect(ws.frames.filter((f) => f.op === "typing" || f.op === "error")).toEqual([]);
    }
    // After the 2 s window, A's typing is relayed again.
    await Bun.sleep(2100);
    a1.send({ op: "typing", conv });
    expect(await b1.op("typing", undefined, 10_000)).toEqual(want);
    // sync replays messages only. (Whatever arrives from here on: the message's live push may come
    // before or after the sync's replay, and nobody types any more.)
    await api("POST", `/api/rooms/${r}/messages`, a.token, { body: "hi" });
    const from = b1.all.length;
    b1.send({ op: "sync", conv, afterSeq: 0, ref: "s" });
    await b1.op("synced", "s", 10_000);
    const since = b1.all.slice(from);
    expect(since.filter((f) => f.op === "msg").length).toBeGreaterThanOrEqual(1);
    expect(since.some((f) => f.op === "typing")).toBe(false);
    console.log(`typing relay latency across instances: ${latencyMs.toFixed(1)} ms`);
  });

  test("in a DM: to the other user's connections only; FORBIDDEN for a third user", async () => {
    const a = await registerUser(c.apiUrl());
    const b = await registerUser(c.apiUrl());
    const x = await registerUser(c.apiUrl());
    const conv = dmConv(a.userId, b.userId);
    const a0 = await open(0, a);
    const a1 = await open(1, a);
    const b0 = await open(0, b);
    const b1 = await open(1, b);
    const x0 = await open(0, x);
    a0.send({ op: "typing", conv });
    for (const ws of [b0, b1]) expect(await ws.op("typing", undefined, 10_000)).toEqual({ op: "typing", conv, user: { userId: a.userId, userName: a.userName } });
    b0.send({ op: "typing", conv });
    for (const ws of [a0, a1]) expect(await ws.op("typing", undefined, 10_000)).toMatchObject({ user: { userId: b.userId } });
    x0.send({ op: "typing", conv, ref: "x" });
    expect(await x0.op("error", "x", 10_000)).toMatchObject({ code: "FORBIDDEN" });
    for (const ws of [a0, a1, b0, b1]) {
      await ws.flush();
      expect(ws.frames.filter((f) => f.op === "typing")).toEqual([]);
    }
  });
});

describe("user look-up", () => {
  test("GET /api/users?name= ignores case; 404 if none; 400 without a valid name; 401 without a token", async () => {
    const a = await registerUser(c.apiUrl());
    const name = `Mixed${crypto.randomUUID().slice(0, 8)}`;
    const m = await registerUser(c.apiUrl(), name);
    expect(await api("GET", `/api/users?name=${name.toUpperCase()}`, a.token)).toEqual({ status: 200, body: { userId: m.userId, userName: name } });
    expect((await api("GET", `/api/users?name=nobody${Date.now()}`, a.token)).status).toBe(404);
    for (const q of ["", "?name=", "?name=ab", "?name=a%20b%20c", `?name=${"x".repeat(33)}`, "?name=%ED%A0%80", `?name=${name}&name=${name}`, "?other=1"])
      expect({ q, status: (await api("GET", `/api/users${q}`, a.token)).status }).toEqual({ q, status: 400 });
    expect((await api("GET", `/api/users?name=${name}`)).status).toBe(401);
  });

  test("the api tier serves its OpenAPI document with the v1.1 endpoints", async () => {
    const doc = await api("GET", "/api/openapi.json");
    expect(doc.status).toBe(200);
    expect(Object.keys(doc.body.paths["/api/conversations/{conv}/read"])).toEqual(["put"]);
    expect(doc.body.paths["/api/users"].get).toBeDefined();
  });
});
