// The typed client library (src/client) against a real in-process cluster: two connect
// instances, real Redis, MariaDB and etcd. Each test uses fresh users and rooms.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { ChatClient, ChatError, unreadOf, type ClientEvent } from "bunchat/client";
import { startCluster, type TestCluster } from "./support/cluster.ts";
import { eventually, http, registerUser, uniqueName } from "./support/http.ts";

let cluster: TestCluster;
const clients: ChatClient[] = [];

beforeAll(async () => {
  cluster = await startCluster({ connect: 2, task: 1, config: { rateLimitPerSec: 1000, rateLimitBurst: 1000 } });
});
afterAll(async () => {
  for (const c of clients) c.close();
  await cluster?.stop();
});

async function signedIn(format: "json" | "msgpack" = "json", opts: { sendTimeoutMs?: number } = {}) {
  const c = new ChatClient({ baseUrl: cluster.apiUrl(), format, backoff: { baseMs: 100, maxMs: 1000 }, ...opts });
  clients.push(c);
  await c.register(uniqueName("cl"), "correct-horse-1");
  await c.connect();
  await eventually(() => c.connection === "open", 15_000, "socket open");
  return c;
}

const seqs = (c: ChatClient, conv: string) => c.store.timeline(conv).messages.map((m) => m.seq);
const bodies = (c: ChatClient, conv: string) => c.store.timeline(conv).messages.map((m) => m.body);
const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

describe("client library", () => {
  test("sign up, resume a saved token, log out: the token stops working and the socket reports signed out", async () => {
    const a = await signedIn();
    const token = a.token!;
    const b = new ChatClient({ baseUrl: cluster.apiUrl() });
    clients.push(b);
    expect(await b.resume(token)).toEqual(a.me!);
    const states: ClientEvent[] = [];
    b.on((e) => states.push(e));
    await b.connect();
    await eventually(() => b.connection === "open", 15_000, "b open");
    await a.logout();
    await eventually(() => b.connection === "signedOut", 15_000, "4401 seen as signed out");
    expect(states.some((e) => e.type === "error" && e.error.code === "SIGNED_OUT")).toBe(true);
    const c = new ChatClient({ baseUrl: cluster.apiUrl() });
    const err = await c.resume(token).catch((e) => e);
    expect(err).toBeInstanceOf(ChatError);
    expect(err.code).toBe("UNAUTHENTICATED");
  });

  for (const format of ["json", "msgpack"] as const) {
    test(`two users chat in a room (${format}): every message once, keyed by seq, pending until acked`, async () => {
      const a = await signedIn(format);
      const b = await signedIn(format);
      const room = uniqueName("r");
      const conv = `room:${room}`;
      await a.joinRoom(room);
      await b.joinRoom(room);
      await Promise.all([a.open(conv), b.open(conv)]);
      const id = a.send(conv, "hello 1");
      expect(a.store.conv(conv).pending.get(id)?.state).toBe("pending");
      for (let i = 2; i <= 20; i++) (i % 2 ? a : b).send(conv, `hello ${i}`);
      await eventually(() => seqs(a, conv).length === 20 && seqs(b, conv).length === 20, 15_000, "20 messages on both");
      expect(seqs(a, conv)).toEqual(range(1, 20));
      expect(seqs(b, conv)).toEqual(range(1, 20));
      expect(a.store.conv(conv).pending.size).toBe(0);
      expect(new Set(bodies(b, conv)).size).toBe(20);
    });
  }

  test("a direct conversation found by name; the other side sees it in its list", async () => {
    const a = await signedIn();
    const b = await signedIn("msgpack");
    const c = await a.startDirect(b.me!.userName.toUpperCase());
    expect(c.peer).toEqual(b.me!);
    await a.open(c.conv);
    a.send(c.conv, "psst");
    await eventually(() => b.store.convs.get(c.conv)?.lastSeq === 1, 15_000, "dm counted on b");
    await b.open(c.conv);
    expect(bodies(b, c.conv)).toEqual(["psst"]);
    expect(b.store.conv(c.conv).peer?.userId).toBe(a.me!.userId);
    const missing = await a.startDirect(uniqueName("nobody")).catch((e) => e);
    expect(missing.code).toBe("NOT_FOUND");
  });

  test("history opens at the newest page and pages back to the first with no duplicates", async () => {
    const a = await signedIn();
    const room = uniqueName("h");
    const conv = `room:${room}`;
    for (let i = 1; i <= 120; i++) {
      const r = await http(cluster.apiUrl(), "POST", `/api/rooms/${room}/messages`, { token: a.token, body: { body: `m${i}` } });
      expect(r.status).toBe(202);
    }
    await a.joinRoom(room);
    await a.open(conv);
    expect(seqs(a, conv)).toEqual(range(71, 120));
    while (await a.loadOlder(conv));
    expect(seqs(a, conv)).toEqual(range(1, 120));
    expect(a.store.conv(conv).hasOlder).toBe(false);
  });

  test("a send while offline fails after its timeout; Retry reuses the clientMsgId and it is stored once", async () => {
    const a = await signedIn("json", { sendTimeoutMs: 500 });
    const room = uniqueName("o");
    const conv = `room:${room}`;
    await a.joinRoom(room);
    await a.open(conv);
    a.setOnline(false);
    expect(a.connection).toBe("offline");
    const id = a.send(conv, "while offline");
    await eventually(() => a.store.conv(conv).pending.get(id)?.state === "failed", 10_000, "failed");
    a.setOnline(true);
    await eventually(() => a.connection === "open", 15_000, "back online");
    a.retry(conv, id);
    a.retry(conv, id); // a double click
    await eventually(() => a.store.conv(conv).pending.size === 0, 15_000, "acked");
    const hist = await a.http.history(conv);
    expect(hist.messages.map((m) => m.body)).toEqual(["while offline"]);
    expect(hist.messages[0]!.clientMsgId).toBe(id);
  });
  test("a connect instance stops: the client reconnects through the gateway and syncs every missed message once", async () => {
    const a = await signedIn();
    const poster = await registerUser(cluster.apiUrl());
    const room = uniqueName("k");
    const conv = `room:${room}`;
    await a.joinRoom(room);
    await a.open(conv);
    const post = (i: number) => http(cluster.apiUrl(), "POST", `/api/rooms/${room}/messages`, { token: poster.token, body: { body: `k${i}` } });
    for (let i = 1; i <= 5; i++) await post(i);
    await eventually(() => seqs(a, conv).length === 5, 15_000, "first 5");
    // Stop the instance a is on (whichever it is), post more while it reconnects.
    const states: string[] = [];
    a.on((e) => e.type === "state" && states.push(e.state));
    for (const c of clients) if (c !== a) c.close(); // so the one instance with a connection is a's
    await eventually(() => cluster.connect.filter((s) => s.connections > 0).length === 1, 15_000, "only a connected");
    const inst = cluster.connect.find((s) => s.connections > 0) ?? cluster.connect[0]!;
    const stopping = cluster.stopMember(inst);
    for (let i = 6; i <= 130; i++) await post(i); // more than one sync page would hold at limit 100
    await stopping;
    await eventually(() => seqs(a, conv).length === 130, 30_000, "130 after reconnect");
    expect(seqs(a, conv)).toEqual(range(1, 130));
    expect(states).toContain("reconnecting");
    expect(a.connection).toBe("open");
  });


  test("read positions: reading on one client clears the unread count on the user's other client; the DM peer gets a receipt", async () => {
    const a = await signedIn();
    const b1 = await signedIn();
    const b2 = new ChatClient({ baseUrl: cluster.apiUrl(), format: "msgpack" });
    clients.push(b2);
    await b2.resume(b1.token!);
    await b2.connect();
    await eventually(() => b2.connection === "open", 15_000, "b2 open");
    const dm = await a.startDirect(b1.me!.userName);
    await a.open(dm.conv);
    a.send(dm.conv, "one");
    a.send(dm.conv, "two");
    await eventually(() => unreadOf(b1.store.conv(dm.conv)) === 2 && unreadOf(b2.store.conv(dm.conv)) === 2, 15_000, "2 unread on both");
    await b1.open(dm.conv);
    await b1.markRead(dm.conv);
    await eventually(() => unreadOf(b2.store.conv(dm.conv)) === 0, 15_000, "cleared on b2");
    await eventually(() => a.store.conv(dm.conv).peerReadSeq === 2, 15_000, "receipt at a");
    const list = await b2.http.conversations();
    expect(list.find((c) => c.conv === dm.conv)).toMatchObject({ readSeq: 2, unread: 0, peer: a.me! });
  });

  test("typing reaches the room's other users, at most once per 2 s", async () => {
    const a = await signedIn();
    const b = await signedIn("msgpack");
    const room = uniqueName("t");
    const conv = `room:${room}`;
    await a.joinRoom(room);
    await b.joinRoom(room);
    a.typing(conv);
    a.typing(conv); // throttled locally
    await eventually(() => b.typingUsers(conv).some((u) => u.userId === a.me!.userId), 15_000, "typing seen");
    expect(a.typingUsers(conv)).toEqual([]);
  });

  test("a body whose frame would pass 16 KiB goes over HTTP and is acked; the socket stays open", async () => {
    const a = await signedIn();
    const room = uniqueName("big");
    const conv = `room:${room}`;
    await a.joinRoom(room);
    await a.open(conv);
    const body = "\u0001".repeat(4000); // 6 bytes each in JSON: a 24 KB frame
    const id = a.send(conv, body);
    await eventually(() => !a.store.conv(conv).pending.has(id), 15_000, "acked");
    expect(a.store.timeline(conv).messages.map((m) => m.body)).toEqual([body]);
    expect(a.connection).toBe("open");
  });
});
