// The HTTP send and read path against real Redis and MariaDB: validation, seq, direct messages,
// idempotent retries, rate limits, history paging and the conversation list.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startCluster, type TestCluster } from "./support/cluster.ts";
import { http, registerUser, uniqueName } from "./support/http.ts";

let c: TestCluster;
let base: string;
beforeAll(async () => {
  c = await startCluster({ logic: 2, api: 1, config: { rateLimitPerSec: 1000, rateLimitBurst: 1000 } });
  base = c.apiUrl();
});
afterAll(() => c?.stop());

const room = () => uniqueName("room");
const send = (token: string, path: string, body: unknown) => http(base, "POST", path, { token, body });

describe("sending", () => {
  test("room sends get consecutive seqs, ids that grow, and the ack's shape", async () => {
    const u = await registerUser(base);
    const r = room();
    const acks = [];
    for (let i = 0; i < 5; i++) {
      const res = await send(u.token, `/api/rooms/${r}/messages`, { body: `hello ${i}` });
      expect(res.status).toBe(202);
      acks.push(res.body);
    }
    expect(acks.map((a) => a.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(acks[0]).toEqual({ id: expect.stringMatching(/^\d+$/), conv: `room:${r}`, seq: 1, ts: expect.any(Number) });
    for (let i = 1; i < 5; i++) expect(BigInt(acks[i].id) > BigInt(acks[i - 1].id)).toBe(true);
    expect(Math.abs(acks[0].ts - Date.now())).toBeLessThan(10_000);
  });

  test("direct messages use dm:<low>:<high>; unknown user 404; bad id 400; self dm allowed", async () => {
    const a = await registerUser(base);
    const b = await registerUser(base);
    const res = await send(b.token, `/api/users/${a.userId}/messages`, { body: "hi a" });
    expect(res.status).toBe(202);
    expect(res.body.conv).toBe(`dm:${Math.min(a.userId, b.userId)}:${Math.max(a.userId, b.userId)}`);
    expect((await send(a.token, `/api/users/999999999/messages`, { body: "x" })).status).toBe(404);
    for (const bad of ["0", "-1", "abc", "1.5"]) expect((await send(a.token, `/api/users/${bad}/messages`, { body: "x" })).status).toBe(400);
    const self = await send(a.token, `/api/users/${a.userId}/messages`, { body: "note to self" });
    expect(self.body.conv).toBe(`dm:${a.userId}:${a.userId}`);
  });

  test("body and clientMsgId limits count code points", async () => {
    const u = await registerUser(base);
    const r = room();
    const p = `/api/rooms/${r}/messages`;
    expect((await send(u.token, p, { body: "😀".repeat(4000) })).status).toBe(202);
    const cases: unknown[] = [
      { body: "" },
      { body: "😀".repeat(4001) },
      { body: "x", clientMsgId: "" },
      { body: "x", clientMsgId: "k".repeat(65) },
      { body: 5 },
      {},
    ];
    for (const b of cases) {
      const res = await send(u.token, p, b);
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe("BAD_REQUEST");
    }
    expect((await send(u.token, `/api/rooms/${"x".repeat(65)}/messages`, { body: "x" })).status).toBe(400);
    expect((await send(u.token, `/api/rooms/bad.room/messages`, { body: "x" })).status).toBe(400);
    expect((await http(base, "POST", p, { raw: "{oops", token: u.token })).status).toBe(400);
    expect((await http(base, "POST", p, { body: { body: "x" } })).status).toBe(401);
  });

  test("a retried clientMsgId returns the first acceptance and uses no seq, even concurrently", async () => {
    const u = await registerUser(base);
    const r = room();
    const p = `/api/rooms/${r}/messages`;
    const first = await send(u.token, p, { body: "once", clientMsgId: "m-1" });
    const again = await send(u.token, p, { body: "different body", clientMsgId: "m-1" });
    expect(again.status).toBe(202);
    expect(again.body).toEqual(first.body);
    const burst = await Promise.all(Array.from({ length: 20 }, () => send(u.token, p, { body: "race", clientMsgId: "m-2" })));
    const ids = new Set(burst.map((x) => `${x.body.id}/${x.body.seq}/${x.body.ts}`));
    expect(ids.size).toBe(1);
    expect(burst[0].body.seq).toBe(2);
    const next = await send(u.token, p, { body: "after" });
    expect(next.body.seq).toBe(3);
    // The same clientMsgId from another user, or in another conversation, is a new message.
    const other = await registerUser(base);
    expect((await send(other.token, p, { body: "x", clientMsgId: "m-1" })).body.seq).toBe(4);
    const h = await http(base, "GET", `/api/conversations/room:${r}/messages`, { token: u.token });
    expect(h.body.messages.map((m: { body: string }) => m.body)).toEqual(["once", "race", "after", "x"]);
    expect(h.body.messages[0].clientMsgId).toBe("m-1");
  });

  test("the per-user rate limit answers 429 beyond the burst, shared by all of a user's sends", async () => {
    const own = await startCluster({ config: { rateLimitPerSec: 2, rateLimitBurst: 5 } });
    try {
      const u = await registerUser(own.apiUrl());
      const v = await registerUser(own.apiUrl());
      const r = room();
      const results = await Promise.all(Array.from({ length: 8 }, () => http(own.apiUrl(), "POST", `/api/rooms/${r}/messages`, { token: u.token, body: { body: "x" } })));
      const codes = results.map((x) => x.status).sort();
      expect(codes.filter((s) => s === 202).length).toBe(5);
      expect(codes.filter((s) => s === 429).length).toBe(3);
      expect(results.find((x) => x.status === 429)?.body.error.code).toBe("RATE_LIMITED");
      // Another user is not affected.
      expect((await http(own.apiUrl(), "POST", `/api/rooms/${r}/messages`, { token: v.token, body: { body: "y" } })).status).toBe(202);
    } finally {
      await own.stop();
    }
  });
});

describe("history", () => {
  let u: { token: string; userId: number };
  let r: string;
  beforeAll(async () => {
    u = await registerUser(base);
    r = room();
    for (let i = 1; i <= 12; i++) await send(u.token, `/api/rooms/${r}/messages`, { body: `m${i}` });
  });
  const get = (q: string, conv = `room:${r}`, token = u.token) => http(base, "GET", `/api/conversations/${conv}/messages${q}`, { token });
  const seqs = (res: { body: { messages: { seq: number }[] } }) => res.body.messages.map((m) => m.seq);

  test("latest, afterSeq and beforeSeq pages with hasMore", async () => {
    const latest = await get("?limit=5");
    expect(seqs(latest)).toEqual([8, 9, 10, 11, 12]);
    expect(latest.body.hasMore).toBe(true);
    const after = await get("?afterSeq=9&limit=5");
    expect(seqs(after)).toEqual([10, 11, 12]);
    expect(after.body.hasMore).toBe(false);
    const after2 = await get("?afterSeq=2&limit=3");
    expect(seqs(after2)).toEqual([3, 4, 5]);
    expect(after2.body.hasMore).toBe(true);
    const before = await get("?beforeSeq=4&limit=5");
    expect(seqs(before)).toEqual([1, 2, 3]);
    expect(before.body.hasMore).toBe(false);
    const before2 = await get("?beforeSeq=8&limit=2");
    expect(seqs(before2)).toEqual([6, 7]);
    expect(before2.body.hasMore).toBe(true);
    const all = await get("");
    expect(seqs(all)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    expect(all.body.hasMore).toBe(false);
    expect(all.body.messages[0]).toEqual({ id: expect.any(String), conv: `room:${r}`, seq: 1, from: { userId: u.userId, userName: expect.any(String) }, body: "m1", ts: expect.any(Number) });
  });

  test("percent-encoded conv, bad parameters, clamping", async () => {
    expect(seqs(await get("?limit=2", encodeURIComponent(`room:${r}`)))).toEqual([11, 12]);
    expect((await get("?afterSeq=1&beforeSeq=5")).status).toBe(400);
    expect((await get("?limit=0")).status).toBe(400);
    expect((await get("?afterSeq=abc")).status).toBe(400);
    expect((await get("", "nonsense")).status).toBe(400);
    expect((await get("?limit=1000")).status).toBe(200);
    const empty = await get("", `room:${room()}`);
    expect(empty.body).toEqual({ messages: [], hasMore: false });
  });

  test("direct conversations are readable only by their users; rooms by anyone signed in", async () => {
    const a = await registerUser(base);
    const b = await registerUser(base);
    const third = await registerUser(base);
    const ack = await send(a.token, `/api/users/${b.userId}/messages`, { body: "secret" });
    expect(seqs(await get("", ack.body.conv, b.token))).toEqual([1]);
    const denied = await get("", ack.body.conv, third.token);
    expect(denied.status).toBe(403);
    expect(denied.body.error.code).toBe("FORBIDDEN");
    expect((await get("", `room:${r}`, third.token)).status).toBe(200);
    expect((await http(base, "GET", `/api/conversations/room:${r}/messages`)).status).toBe(401);
  });
});

describe("conversations", () => {
  test("lists direct conversations and rooms posted to, most recent first", async () => {
    const a = await registerUser(base);
    const b = await registerUser(base);
    const r1 = room();
    const r2 = room();
    await send(a.token, `/api/rooms/${r1}/messages`, { body: "1" });
    const dm = await send(b.token, `/api/users/${a.userId}/messages`, { body: "2" });
    await send(a.token, `/api/rooms/${r2}/messages`, { body: "3" });
    await send(a.token, `/api/rooms/${r2}/messages`, { body: "4" });
    const res = await http(base, "GET", "/api/conversations", { token: a.token });
    expect(res.status).toBe(200);
    expect(res.body.conversations.map((x: { conv: string }) => x.conv)).toEqual([`room:${r2}`, dm.body.conv, `room:${r1}`]);
    // (v1.1) Own sends moved A's readSeq; B's DM is unread for A and has a peer.
    expect(res.body.conversations[0]).toEqual({ conv: `room:${r2}`, lastSeq: 2, lastTs: expect.any(Number), readSeq: 2, unread: 0 });
    expect(res.body.conversations[1]).toEqual({ conv: dm.body.conv, lastSeq: 1, lastTs: dm.body.ts, readSeq: 0, unread: 1, peer: { userId: b.userId, userName: b.userName } });
    const forB = await http(base, "GET", "/api/conversations", { token: b.token });
    expect(forB.body.conversations).toEqual([{ conv: dm.body.conv, lastSeq: 1, lastTs: dm.body.ts, readSeq: 1, unread: 0, peer: { userId: a.userId, userName: a.userName } }]);
  });
});
