// Connect tier (src/connect/sync-hold.ts): a conversation's live messages that arrive while a
// connection's `sync` of it is in flight reach that connection after the sync's replay, in seq
// order and once (CONTRACT.md guarantees 2 and 3), also across pages (hasMore); those it
// replayed, pushed later, are not sent again; a sync starts after the joins sent before it. Real
// WebSockets and a real gRPC push client, against the in-memory fake of logic with its calls held.
import { expect, test } from "bun:test";
import { AppError } from "../src/shared/errors.ts";
import { dmConv, type Message, type UserRef } from "../src/shared/protocol.ts";
import { MAX_HELD, MORE_WAIT_MS } from "../src/connect/sync-hold.ts";
import type { PushEvent } from "../proto/connect.ts";
import { eventually } from "./support/http.ts";
import { connectPerFile, joinRoom as join, type WsClient } from "./support/connect.ts";

const file = connectPerFile();
const open = file.open.bind(file);

let n = 0;
const newRoom = () => `order-${++n}`;
const push = (events: PushEvent[]) => file.c.rpc.push({ events });

/** Stores count messages from `from` in the fake's history of the room (seqs 1..count). */
async function stored(room: string, from: UserRef, count: number): Promise<Message[]> {
  await file.c.logic.send({ items: Array.from({ length: count }, (_, i) => ({ from, room, body: `m${i + 1}`, retryKey: `k-${room}-${i}` })) });
  return file.c.logic.messages.get(`room:${room}`)!;
}

/** The fake's stored message 1 of a room, as task would push it. */
const c1 = (room: string, from: UserRef): Message => ({ ...file.c.logic.messages.get(`room:${room}`)![0], from });
const live = (conv: string, from: UserRef, seq: number): Message => ({ id: String(70_000 + seq), conv, seq, from, body: `live ${seq}`, ts: Date.now() });

/** Holds every history call until the returned function is called (with an error: they fail). */
function holdHistory(): (err?: Error) => void {
  let release!: (err?: Error) => void;
  file.c.logic.gate = new Promise<void>((res, rej) => (release = (err) => (err ? rej(err) : res())));
  file.c.logic.gate.catch(() => {});
  return (err) => {
    file.c.logic.gate = undefined;
    release(err);
  };
}

/** The msg seqs and synced frames a client got, in arrival order: numbers for msg, "synced:<lastSeq>". */
const order = (ws: WsClient) => ws.all.filter((f) => f.op === "msg" || f.op === "synced").map((f) => (f.op === "msg" ? f.seq : `synced:${f.lastSeq}`));

/** A new user's connection joined to a new room. */
async function member(format?: "json" | "msgpack") {
  const room = newRoom();
  const a = file.c.logic.user();
  const ws = await open(a.token, format);
  await join(ws, room);
  return { room, conv: `room:${room}`, a, ws };
}

async function syncHeld(ws: WsClient, conv: string, afterSeq = 0, ref = "s"): Promise<void> {
  const before = file.c.logic.historyReqs.length;
  ws.send({ op: "sync", conv, afterSeq, ref });
  await eventually(() => file.c.logic.historyReqs.length > before, 5000, "the sync's history call");
}

test("room: live messages pushed during a sync come after its replay, those it replayed not again; other sockets get them at once", async () => {
  const room = newRoom();
  const conv = `room:${room}`;
  const a = file.c.logic.user();
  const other = file.c.logic.user();
  const [syncing, bystander] = [await open(a.token), await open(other.token, "msgpack")];
  await join(syncing, room);
  await join(bystander, room);
  await stored(room, other.user, 3);

  const open_ = holdHistory();
  try {
    await syncHeld(syncing, conv);
    await push([3, 4, 5].map((seq) => ({ t: "m", room, msg: live(conv, other.user, seq) })));
    for (const seq of [3, 4, 5]) expect((await bystander.op("msg")).seq).toBe(seq);
    await syncing.flush();
    expect(order(syncing)).toEqual([]);
  } finally {
    open_();
  }
  await syncing.op("synced", "s");
  await push([{ t: "m", room, msg: live(conv, other.user, 6) }]);
  await eventually(() => order(syncing).length === 7, 5000, `seq 6 live (have ${order(syncing)})`);
  expect(order(syncing)).toEqual([1, 2, 3, "synced:3", 4, 5, 6]);
  await syncing.flush();
  expect(order(syncing)).toHaveLength(7);
});

test("live messages the sync already replayed, pushed after it, are dropped until the first one past its replay", async () => {
  const room = newRoom();
  const conv = `room:${room}`;
  const a = file.c.logic.user();
  const b = file.c.logic.user();
  const dm = dmConv(a.user.userId, b.user.userId);
  const [syncing, bystander] = [await open(a.token), await open(b.token)];
  await join(syncing, room);
  await join(bystander, room);
  await stored(room, b.user, 3);
  await file.c.logic.send({ items: [1, 2].map((i) => ({ from: b.user, toUserId: a.user.userId, body: `dm ${i}`, retryKey: `dm-late-${i}` })) });
  syncing.send({ op: "sync", conv, afterSeq: 0, ref: "r" });
  syncing.send({ op: "sync", conv: dm, afterSeq: 0, ref: "d" });
  await syncing.op("synced", "r");
  await syncing.op("synced", "d");
  // task pushes what the syncs read only now: the room's 2 and 3, the DM's 2; then new ones.
  await push([2, 3, 4, 5].map((seq) => ({ t: "m", room, msg: live(conv, b.user, seq) })));
  await push([2, 3].map((seq) => ({ t: "m", users: [a.user.userId, b.user.userId], msg: live(dm, b.user, seq) })));
  await push([{ t: "m", room, msg: live(conv, b.user, 6) }]);
  await syncing.flush();
  const seqs = (cv: string) => syncing.all.filter((f) => f.op === "msg" && f.conv === cv).map((f) => f.seq);
  expect(seqs(conv)).toEqual([1, 2, 3, 4, 5, 6]);
  expect(seqs(dm)).toEqual([1, 2, 3]);
  await bystander.flush();
  expect(bystander.all.filter((f) => f.op === "msg" && f.conv === conv).map((f) => f.seq)).toEqual([2, 3, 4, 5, 6]);
});

test("a sync that replays nothing drops nothing after it, whatever its afterSeq", async () => {
  const { room, conv, a, ws } = await member();
  ws.send({ op: "sync", conv, afterSeq: 9, ref: "s" });
  expect(await ws.op("synced", "s")).toMatchObject({ lastSeq: 9, hasMore: false });
  await push([1, 2].map((seq) => ({ t: "m", room, msg: live(conv, a.user, seq) })));
  await ws.flush();
  expect(order(ws)).toEqual(["synced:9", 1, 2]);
});

test("direct conversation: held for the syncing connection only, in both formats", async () => {
  const a = file.c.logic.user();
  const b = file.c.logic.user();
  const conv = dmConv(a.user.userId, b.user.userId);
  const [json, msgpack, peer] = [await open(a.token), await open(a.token, "msgpack"), await open(b.token)];
  await file.c.logic.send({ items: [{ from: b.user, toUserId: a.user.userId, body: "first", retryKey: "dm-1" }] });

  const open_ = holdHistory();
  try {
    await syncHeld(json, conv);
    await syncHeld(msgpack, conv, 0, "s2");
    await push([{ t: "m", users: [a.user.userId, b.user.userId], msg: live(conv, b.user, 2) }]);
    expect((await peer.op("msg")).seq).toBe(2);
    await json.flush();
    await msgpack.flush();
    expect(order(json)).toEqual([]);
    expect(order(msgpack)).toEqual([]);
  } finally {
    open_();
  }
  for (const ws of [json, msgpack]) await eventually(() => order(ws).length === 3, 5000, "replay, synced, held");
  expect(order(json)).toEqual([1, "synced:1", 2]);
  expect(order(msgpack)).toEqual([1, "synced:1", 2]);
  expect(msgpack.kinds.at(-1)).toBe("binary");
});

test("a sync that fails releases what it held: the error, then every held message", async () => {
  const { room, conv, a, ws } = await member();
  const open_ = holdHistory();
  try {
    await syncHeld(ws, conv);
    await push([1, 2].map((seq) => ({ t: "m", room, msg: live(conv, a.user, seq) })));
    await ws.flush();
    expect(order(ws)).toEqual([]);
  } finally {
    open_(new AppError("UNAVAILABLE", "logic went away"));
  }
  expect((await ws.op("error", "s")).code).toBe("UNAVAILABLE");
  await eventually(() => order(ws).length === 2, 5000, "the held messages");
  expect(order(ws)).toEqual([1, 2]);
  await push([{ t: "m", room, msg: live(conv, a.user, 3) }]);
  await eventually(() => order(ws).length === 3, 5000, "live again");
});

test("joined during the sync: held too; left during it: what was held comes, nothing after", async () => {
  const a = file.c.logic.user();
  const joinLate = newRoom();
  const leaveEarly = newRoom();
  const ws = await open(a.token);
  await join(ws, leaveEarly);
  const open_ = holdHistory();
  try {
    await syncHeld(ws, `room:${joinLate}`, 0, "s1");
    await syncHeld(ws, `room:${leaveEarly}`, 0, "s2");
    await join(ws, joinLate);
    await push([
      { t: "m", room: joinLate, msg: live(`room:${joinLate}`, a.user, 1) },
      { t: "m", room: leaveEarly, msg: live(`room:${leaveEarly}`, a.user, 1) },
    ]);
    ws.send({ op: "leave", room: leaveEarly, ref: "l" });
    await ws.op("left", "l");
    await push([{ t: "m", room: leaveEarly, msg: live(`room:${leaveEarly}`, a.user, 2) }]);
    await ws.flush();
    expect(order(ws)).toEqual([]);
  } finally {
    open_();
  }
  await ws.op("synced", "s1");
  await ws.op("synced", "s2");
  await push([
    { t: "m", room: joinLate, msg: live(`room:${joinLate}`, a.user, 2) },
    { t: "m", room: leaveEarly, msg: live(`room:${leaveEarly}`, a.user, 3) },
  ]);
  await ws.flush();
  const msgs = ws.all.filter((f) => f.op === "msg").map((f) => `${f.conv}#${f.seq}`);
  expect(msgs.filter((m) => m.startsWith(`room:${joinLate}#`))).toEqual([`room:${joinLate}#1`, `room:${joinLate}#2`]);
  expect(msgs.filter((m) => m.startsWith(`room:${leaveEarly}#`))).toEqual([`room:${leaveEarly}#1`]);
});

test("a reply with hasMore keeps holding for the next page: paging through a backlog stays in order", async () => {
  const { room, conv, a, ws } = await member();
  await stored(room, a.user, 5);
  ws.send({ op: "sync", conv, afterSeq: 0, limit: 2, ref: "p1" });
  expect(await ws.op("synced", "p1")).toMatchObject({ lastSeq: 2, hasMore: true });
  await push([{ t: "m", room, msg: live(conv, a.user, 6) }]);
  ws.send({ op: "sync", conv, afterSeq: 2, limit: 2, ref: "p2" });
  await ws.op("synced", "p2");
  ws.send({ op: "sync", conv, afterSeq: 4, limit: 2, ref: "p3" });
  await ws.op("synced", "p3");
  await ws.flush();
  expect(order(ws)).toEqual([1, 2, "synced:2", 3, 4, "synced:4", 5, "synced:5", 6]);
});

test(`after hasMore, a client that does not ask for the next page gets the held messages after ${MORE_WAIT_MS} ms`, async () => {
  const { room, conv, a, ws } = await member();
  await stored(room, a.user, 3);
  ws.send({ op: "sync", conv, afterSeq: 0, limit: 2, ref: "p1" });
  await ws.op("synced", "p1");
  const t0 = performance.now();
  await push([{ t: "m", room, msg: live(conv, a.user, 4) }]);
  await ws.flush();
  expect(order(ws)).toEqual([1, 2, "synced:2"]);
  await eventually(() => order(ws).length === 4, MORE_WAIT_MS + 3000, "the held message");
  expect(performance.now() - t0).toBeGreaterThan(MORE_WAIT_MS - 100);
  await push([{ t: "m", room, msg: live(conv, a.user, 5) }]);
  await ws.flush();
  expect(order(ws)).toEqual([1, 2, "synced:2", 4, 5]);
});

test("a sync waits for the joins sent before it: join, join, sync of the second room misses nothing", async () => {
  const [first, second] = [newRoom(), newRoom()];
  const a = file.c.logic.user();
  const ws = await open(a.token);
  let joinsDone!: () => void;
  file.c.logic.presenceGate = new Promise<void>((res) => (joinsDone = res));
  try {
    ws.send({ op: "join", room: first, ref: "j1" });
    ws.send({ op: "join", room: second, ref: "j2" });
    ws.send({ op: "sync", conv: `room:${second}`, afterSeq: 0, ref: "s" });
    await ws.flush();
    // Sent while the second join waits behind the first: not live to this socket yet.
    await stored(second, a.user, 1);
    await push([{ t: "m", room: second, msg: c1(second, a.user) }]);
    await ws.flush();
  } finally {
    file.c.logic.presenceGate = undefined;
    joinsDone();
  }
  await ws.op("synced", "s");
  expect(order(ws)).toEqual([1, "synced:1"]);
});

test(`past ${MAX_HELD} held messages the hold is given up: they and what follows go out live, in order (an empty replay here)`, async () => {
  const { room, conv, a, ws } = await member("msgpack");
  const total = MAX_HELD + 50;
  const open_ = holdHistory();
  try {
    await syncHeld(ws, conv);
    for (let from = 1; from <= total; from += 500) {
      const seqs = Array.from({ length: Math.min(500, total - from + 1) }, (_, i) => from + i);
      await push(seqs.map((seq) => ({ t: "m", room, msg: live(conv, a.user, seq) })));
    }
    await eventually(() => order(ws).length === total, 10_000, `every message live (have ${order(ws).length})`);
  } finally {
    open_();
  }
  await ws.op("synced", "s");
  await push([{ t: "m", room, msg: live(conv, a.user, total + 1) }]);
  await ws.flush();
  expect(order(ws)).toEqual([...Array.from({ length: total }, (_, i) => i + 1), "synced:0", total + 1]);
});
