// Connect against the real tiers: logic (LogicRPC via etcd), task (ConnectRPC push), api
// (/api/gateway, logout) and real etcd discovery; two connect instances prove cross-instance delivery.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { ConnectServer } from "../src/connect/server.ts";
import { newInstanceId } from "../src/shared/instance.ts";
import { CLOSE } from "../src/shared/protocol.ts";
import { etcdTarget } from "../src/shared/resolver.ts";
import { makeClient } from "../src/shared/rpc.ts";
import { ClusterAuth } from "../src/shared/cluster-auth.ts";
import { TaskWorker } from "../src/task/worker.ts";
import { LOGIC_SERVICE, LogicService, type LogicApi } from "../proto/logic.ts";
import { startCluster, type TestCluster } from "./support/cluster.ts";
import { WsClient } from "./support/connect.ts";
import { eventually, http, registerUser } from "./support/http.ts";

let c: TestCluster;
let connects: ConnectServer[] = [];
const clients: WsClient[] = [];

async function startConnect(): Promise<ConnectServer> {
  const discovery = c.discovery();
  const target = etcdTarget(discovery, LOGIC_SERVICE);
  const logic = makeClient<LogicApi>(LogicService, target.target, undefined, new ClusterAuth(c.config.clusterSecrets));
  const server = new ConnectServer({ config: c.config, log: c.log.child({ role: "connect" }), logic, discovery, instanceId: newInstanceId("connect") });
  await server.start();
  c.track({
    stop: async () => {
      await server.stop();
      logic.close();
      target.release();
    },
  });
  return server;
}

beforeAll(async () => {
  c = await startCluster({ logic: 1, api: 1, config: { rateLimitPerSec: 1000, rateLimitBurst: 1000 } });
  const task = new TaskWorker({ config: c.config, log: c.log.child({ role: "task" }), redis: c.config.redisUrl, db: c.db.db, discovery: c.discovery(), instanceId: newInstanceId("task") });
  await task.start();
  c.track(task);
  connects = [await startConnect(), await startConnect()];
});

afterAll(async () => {
  for (const cl of clients) cl.ws.close();
  await c?.stop();
});

async function open(server: ConnectServer, token: string, format?: "msgpack"): Promise<WsClient> {
  const cl = await WsClient.open(`${server.wsUrl}?token=${encodeURIComponent(token)}${format ? `&format=${format}` : ""}`);
  clients.push(cl);
  return cl;
}

test("/api/gateway hands out a registered connect instance", async () => {
  const urls = new Set(connects.map((s) => s.wsUrl));
  await eventually(async () => urls.has((await http(c.apiUrl(), "GET", "/api/gateway")).body?.wsUrl));
});

test("a WS send is acked and delivered live across instances, with presence and sync", async () => {
  const a = await registerUser(c.apiUrl());
  const b = await registerUser(c.apiUrl());
  const room = `cc-${crypto.randomUUID().slice(0, 8)}`;
  const wa = await open(connects[0], a.token);
  const wb = await open(connects[1], b.token, "msgpack");

  wa.send({ op: "join", room, ref: 1 });
  expect(await wa.op("joined", 1, 10_000)).toMatchObject({ room, conv: `room:${room}`, onlineCount: 1, lastSeq: 0 });
  wb.send({ op: "join", room, ref: 2 });
  expect((await wb.op("joined", 2, 10_000)).onlineCount).toBe(2);
  expect(await wa.op("presence", undefined, 10_000)).toEqual({ op: "presence", room, onlineCount: 2, event: "join", user: { userId: b.userId, userName: b.userName } });

  wa.send({ op: "send", room, body: "hello", clientMsgId: "m1", ref: "s" });
  const ack = await wa.op("ack", "s", 10_000);
  expect(ack).toMatchObject({ conv: `room:${room}`, seq: 1 });
  for (const ws of [wa, wb]) {
    const m = await ws.op("msg", undefined, 10_000);
    expect(m).toEqual({ op: "msg", id: ack.id, conv: `room:${room}`, seq: 1, from: { userId: a.userId, userName: a.userName }, body: "hello", ts: ack.ts, clientMsgId: "m1" });
  }

  // A direct message reaches both users' connections, on either instance.
  wb.send({ op: "send", toUserId: a.userId, body: "psst", ref: "d" });
  const dack = await wb.op("ack", "d", 10_000);
  for (const ws of [wa, wb]) expect((await ws.op("msg", undefined, 10_000)).id).toBe(dack.id);

  wb.send({ op: "sync", conv: `room:${room}`, afterSeq: 0, ref: "y" });
  expect(await wb.op("synced", "y", 10_000)).toMatchObject({ lastSeq: 1, hasMore: false });

  const info = await http(c.apiUrl(), "GET", `/api/rooms/${room}`, { token: a.token });
  expect(info.body.onlineCount).toBe(2);

  await wb.closeAndWait();
  expect(await wa.op("presence", undefined, 10_000)).toMatchObject({ event: "leave", onlineCount: 1, user: { userId: b.userId } });
});

test("logout closes that token's connections with 4401; a bad token is refused", async () => {
  const u = await registerUser(c.apiUrl());
  const ws = await open(connects[0], u.token);
  expect((await http(c.apiUrl(), "DELETE", "/api/sessions/current", { token: u.token })).status).toBe(204);
  expect((await ws.closed).code).toBe(CLOSE.TOKEN_REVOKED);
  const res = await fetch(`${connects[0].wsUrl.replace("ws:", "http:")}?token=${u.token}`);
  expect(res.status).toBe(401);
});
