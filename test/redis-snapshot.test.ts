// Redis restarted from an older copy of its files while MySQL is ahead (as after a restore from a
// backup, or a host that lost its last writes), on `bun run cluster`: the AOF folder is copied,
// more messages are sent and stored in MySQL, then Redis is SIGKILLed and its folder replaced by
// the old copy before the cluster restarts it. No acknowledged message is lost or replaced, no
// seq is handed out twice, room info and a join report MySQL's lastSeq, conversation lists come
// back (from MySQL), and direct messages to a user registered after the copy still work (names
// come from MySQL).
import { afterAll, beforeAll, expect, test } from "bun:test";
import mysql from "mysql2/promise";
import { cpSync, renameSync } from "node:fs";
import { join } from "node:path";
import { spawnCluster, isAlive, type ProcessCluster } from "./support/process-cluster.ts";
import { eventually, http, registerUser, uniqueName } from "./support/http.ts";
import { fullHistory } from "./support/outcomes.ts";
import { WsClient } from "./support/connect.ts";

let cluster: ProcessCluster | undefined;
beforeAll(async () => {
  cluster = await spawnCluster(["--api", "1", "--logic", "1", "--task", "1", "--connect", "1"], { IM_RATE_LIMIT: "1000", IM_RATE_BURST: "1000" });
}, 90_000);
afterAll(() => cluster?.stop());

test("Redis restored from an older copy while MySQL is ahead: nothing acked lost or replaced, no seq reused, lists back", async () => {
  const c = cluster!;
  const api = c.ready.api[0];
  const db = await mysql.createConnection({ uri: `mysql://root@127.0.0.1:${c.base + 1}/bunchat`, supportBigNumbers: true, bigNumberStrings: true });
  const stored = async (conv: string) => Number(((await db.query("SELECT COUNT(*) AS n FROM messages WHERE conv = ?", [conv]))[0] as { n: number }[])[0].n);
  try {
    const [a, b] = await Promise.all([registerUser(api), registerUser(api)]);
    const room = uniqueName("snap");
    const roomConv = `room:${room}`;
    const acks = new Map<string, { id: string; seq: number }>();
    const send = async (token: string, path: string, body: string) => {
      const r = await http(api, "POST", path, { token, body: { body } });
      if (r.status !== 202) throw new Error(`send ${body}: ${r.status} ${JSON.stringify(r.body)}`);
      acks.set(body, { id: r.body.id, seq: r.body.seq });
      return r.body as { id: string; seq: number; conv: string };
    };
    for (let i = 0; i < 30; i++) await send(a.token, `/api/rooms/${room}/messages`, `old${i}`);
    const dmAB = (await send(a.token, `/api/users/${b.userId}/messages`, "dm-ab")).conv;
    await eventually(async () => (await stored(roomConv)) === 30 && (await stored(dmAB)) === 1, 20_000, "old messages in MySQL");

    // The copy: appendfsync always, so the AOF folder on disk is consistent at any moment.
    const redisDir = join(c.dataDir, "redis");
    cpSync(redisDir, `${redisDir}-old`, { recursive: true });

    // After the copy: a new user, more messages, a new room; all of it reaches MySQL.
    const cUser = await registerUser(api);
    for (let i = 0; i < 30; i++) await send(a.token, `/api/rooms/${room}/messages`, `new${i}`);
    const dmAC = (await send(a.token, `/api/users/${cUser.userId}/messages`, "dm-ac-1")).conv;
    const room2 = uniqueName("snap2");
    await send(a.token, `/api/rooms/${room2}/messages`, "r2-1");
    await eventually(async () => (await stored(roomConv)) === 60 && (await stored(dmAC)) === 1 && (await stored(`room:${room2}`)) === 1, 20_000, "new messages in MySQL");
    // Conversation lists are written behind: wait until MySQL has a's four.
    await eventually(async () => Number(((await db.query("SELECT COUNT(*) AS n FROM user_conversations WHERE user_id = ?", [a.userId]))[0] as { n: number }[])[0].n) === 4, 20_000, "lists in MySQL");

    // Redis loses everything after the copy.
    const pid = c.servicePid("redis");
    renameSync(redisDir, `${redisDir}-lost`);
    cpSync(`${redisDir}-old`, redisDir, { recursive: true });
    process.kill(pid, "SIGKILL");
    await eventually(() => !isAlive(pid) && c.servicePid("redis") !== pid, 20_000, "redis restarted");

    // Before anything seeds these counters: room info and a WS join report MySQL's lastSeq (60
    // and 1), not the older copy's (30, and none for the room made after the copy).
    const info = await eventually(async () => {
      const r = await http(api, "GET", `/api/rooms/${room}`, { token: a.token });
      return r.status === 200 ? r.body : undefined;
    }, 30_000, "room info after the restore");
    expect(info.lastSeq).toBe(60);
    const ws = await WsClient.open(`${c.ready.connect[0]}?token=${a.token}`);
    try {
      ws.send({ op: "join", room: room2, ref: "j" });
      expect(await ws.op("joined", "j", 10_000)).toMatchObject({ room: room2, lastSeq: 1 });
    } finally {
      ws.ws.close();
    }

    // a's session predates the copy; sends work again once Redis is back.
    const after = await eventually(async () => {
      const r = await http(api, "POST", `/api/rooms/${room}/messages`, { token: a.token, body: { body: "after0" } });
      return r.status === 202 ? r.body : undefined;
    }, 30_000, "a send accepted after the restore");
    acks.set("after0", { id: after.id, seq: after.seq });
    expect(after.seq).toBe(61); // above every seq MySQL holds, none reused
    for (let i = 1; i < 10; i++) expect((await send(a.token, `/api/rooms/${room}/messages`, `after${i}`)).seq).toBe(61 + i);
    // A direct message to the user registered after the copy: name from MySQL, seq after MySQL's.
    const dm2 = await send(a.token, `/api/users/${cUser.userId}/messages`, "dm-ac-2");
    expect(dm2.seq).toBe(2);

    // History: every acked message once, with its id and seq.
    const hist = await fullHistory(api, a.token, roomConv);
    expect(hist.map((m) => m.seq)).toEqual(Array.from({ length: 70 }, (_, i) => i + 1));
    for (const m of hist) expect(acks.get(m.body)).toEqual({ id: m.id, seq: m.seq });
    const histDm = await fullHistory(api, a.token, dmAC);
    expect(histDm.map((m) => [m.seq, m.body])).toEqual([
      [1, "dm-ac-1"],
      [2, "dm-ac-2"],
    ]);
    await eventually(async () => (await stored(roomConv)) === 70, 20_000, "after-restore messages in MySQL");
    const [ids] = await db.query("SELECT seq, id FROM messages WHERE conv = ? ORDER BY seq", [roomConv]);
    expect((ids as { seq: string; id: string }[]).map((r) => `${r.seq}:${r.id}`)).toEqual(hist.map((m) => `${m.seq}:${m.id}`));

    // a's conversation list has everything, including what Redis lost, with the right lastSeq.
    const list = await http(api, "GET", "/api/conversations", { token: a.token });
    expect(list.status).toBe(200);
    const bySeq = Object.fromEntries((list.body.conversations as { conv: string; lastSeq: number }[]).map((x) => [x.conv, x.lastSeq]));
    expect(bySeq).toMatchObject({ [roomConv]: 70, [dmAB]: 1, [dmAC]: 2, [`room:${room2}`]: 1 });
    // A user whose session was lost with Redis logs in again (sessions live in Redis only).
    const relogin = await http(api, "POST", "/api/sessions", { body: { userName: cUser.userName, password: "correct-horse-1" } });
    expect(relogin.status).toBe(200);
    const cList = await http(api, "GET", "/api/conversations", { token: relogin.body.token });
    expect(cList.body.conversations.map((x: { conv: string }) => x.conv)).toEqual([dmAC]);
  } finally {
    await db.end();
  }
}, 120_000);
