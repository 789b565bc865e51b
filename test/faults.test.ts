// Crash tests on real processes: `bun run cluster` with 2 logic, 2 task and 2 connect; one
// process of each tier is killed with SIGKILL while messages flow. Afterwards every
// acknowledged message is in MySQL exactly once and has reached every online recipient, live
// or, for clients whose connect instance died, through reconnect and sync.
import { afterAll, beforeAll, expect, test } from "bun:test";
import mysql from "mysql2/promise";
import { spawnCluster, type ProcessCluster } from "./support/process-cluster.ts";
import { PacedSender, Receiver } from "./support/chat-clients.ts";
import { eventually, http, registerUser, uniqueName } from "./support/http.ts";
import { WsClient } from "./support/connect.ts";

let cluster: ProcessCluster | undefined;
beforeAll(async () => {
  cluster = await spawnCluster(["--api", "1", "--logic", "2", "--task", "2", "--connect", "2"], {
    IM_LEASE_TTL: "2",
    IM_RATE_LIMIT: "1000",
    IM_RATE_BURST: "1000",
  });
}, 90_000);
afterAll(() => cluster?.stop());

test("SIGKILL of a task, a connect and a logic process loses no acknowledged message", async () => {
  if (!cluster) throw new Error("no cluster");
  const api = cluster.ready.api[0];
  const room = uniqueName("crash");
  const [s, a, b] = await Promise.all([registerUser(api), registerUser(api), registerUser(api)]);
  const onConnect0 = new Receiver(api, a.token, room);
  const onConnect1 = new Receiver(api, b.token, room);
  await onConnect0.start(cluster.ready.connect[0]);
  await onConnect1.start(cluster.ready.connect[1]);
  const sender = new PacedSender(() => api, s.token, room);

  const kill = async (role: string) => {
    await Bun.sleep(2500);
    process.kill(cluster!.pid(role, 0), "SIGKILL");
  };
  await kill("task");
  await kill("connect");
  await kill("logic");
  await Bun.sleep(2500);
  await sender.stop();

  const acked = sender.acked;
  expect(acked.length).toBeGreaterThan(100);
  // Seqs are dense: the retries never used up a seq.
  expect(acked.map((x) => x.seq)).toEqual(Array.from({ length: acked.length }, (_, i) => i + 1));

  // Every recipient has every acknowledged message with the acknowledged id.
  for (const r of [onConnect0, onConnect1]) {
    await eventually(() => acked.every((x) => r.got.get(x.seq) === x.id), 20_000);
  }
  // The client on the killed connect instance had to reconnect; the other stayed up and got everything live.
  expect(onConnect0.reconnects).toBeGreaterThanOrEqual(1);
  expect(onConnect1.reconnects).toBe(0);

  // MySQL has each exactly once.
  const db = await mysql.createConnection({ uri: `mysql://root@127.0.0.1:${cluster.base + 1}/bunchat`, supportBigNumbers: true, bigNumberStrings: true });
  try {
    await eventually(async () => {
      const [rows] = await db.query("SELECT COUNT(*) AS n FROM messages WHERE conv = ?", [`room:${room}`]);
      return Number((rows as { n: number }[])[0].n) === acked.length;
    }, 20_000);
    const [rows] = await db.query("SELECT id, seq FROM messages WHERE conv = ? ORDER BY seq", [`room:${room}`]);
    expect((rows as { id: string; seq: number }[]).map((r) => `${r.seq}:${r.id}`)).toEqual(acked.map((x) => `${x.seq}:${x.id}`));
  } finally {
    await db.end();
    onConnect0.stop();
    onConnect1.stop();
  }
}, 120_000);

test("a connect instance killed with SIGKILL: its users leave rooms (presence) within 10 s", async () => {
  if (!cluster) throw new Error("no cluster");
  const api = cluster.ready.api[0];
  const room = uniqueName("gone");
  const [stays, goes] = await Promise.all([registerUser(api), registerUser(api)]);
  const ws = await WsClient.open(`${cluster.ready.connect[0]}?token=${stays.token}`);
  const doomed = await WsClient.open(`${cluster.ready.connect[1]}?token=${goes.token}`);
  for (const w of [ws, doomed]) {
    w.send({ op: "join", room, ref: "j" });
    await w.op("joined", "j", 10_000);
  }
  await ws.next((f) => f.op === "presence" && f.event === "join" && f.user.userId === goes.userId);
  process.kill(cluster.pid("connect", 1), "SIGKILL");
  const killedAt = Date.now();
  const leave = await ws.next((f) => f.op === "presence" && f.event === "leave", 10_000);
  expect(leave).toMatchObject({ room, onlineCount: 1, user: { userId: goes.userId, userName: goes.userName } });
  expect(Date.now() - killedAt).toBeLessThan(10_000);
  const info = await http(api, "GET", `/api/rooms/${room}`, { token: stays.token });
  expect(info.body).toMatchObject({ roomId: room, onlineCount: 1, members: [{ userId: stays.userId, userName: stays.userName }] });
  ws.ws.close();
}, 60_000);
