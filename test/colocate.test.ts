// Co-located roles on real processes: `bun run cluster --colocate` with 2 of every role runs two
// node processes (src/bin/node.ts), each hosting api, logic, task and connect with in-process calls
// between them. A WebSocket round trip crosses both nodes; then node 0 is killed with SIGKILL while
// messages flow through both api instances: every acknowledged message is in MySQL exactly once
// and reaches every recipient (live, or by reconnect and sync for the client on the killed node).
import { afterAll, beforeAll, expect, test } from "bun:test";
import mysql from "mysql2/promise";
import { readFileSync } from "node:fs";
import { spawnCluster, parseLogLine, type ProcessCluster } from "./support/process-cluster.ts";
import { PacedSender, Receiver } from "./support/chat-clients.ts";
import { eventually, registerUser, uniqueName } from "./support/http.ts";
import { WsClient } from "./support/connect.ts";

/** ESTABLISHED TCP connections whose server side is one of `ports` on this machine (/proc/net/tcp*). */
function establishedTo(ports: number[]): number {
  let n = 0;
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    for (const line of readFileSync(file, "utf8").split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 4 || f[3] !== "01") continue;
      if (ports.includes(parseInt(f[1].split(":").pop()!, 16))) n++;
    }
  }
  return n;
}

let cluster: ProcessCluster | undefined;
beforeAll(async () => {
  cluster = await spawnCluster(["--colocate", "--api", "2", "--logic", "2", "--task", "2", "--connect", "2"], {
    IM_LEASE_TTL: "2",
    IM_RATE_LIMIT: "1000",
    IM_RATE_BURST: "1000",
  });
}, 90_000);
afterAll(() => cluster?.stop());

test("two node processes host every role: each role instance is healthy and registered", async () => {
  if (!cluster) throw new Error("no cluster");
  const nodes = cluster.err.all.map(parseLogLine).filter((r) => r?.msg === "role started" && r.role === "node");
  expect(nodes.length).toBe(2);
  // One ops port per role instance, 8 in all, each answering /readyz (its own checks, etcd registration included).
  expect(cluster.ready.metrics.length).toBe(8);
  for (const url of cluster.ready.metrics) expect((await fetch(`${url}/readyz`)).status).toBe(200);
});

test("a WebSocket round trip across the two nodes", async () => {
  if (!cluster) throw new Error("no cluster");
  const api = cluster.ready.api[0];
  const room = uniqueName("colo");
  const a = await registerUser(api);
  const b = await registerUser(api);
  const wa = await WsClient.open(`${cluster.ready.connect[0]}?token=${a.token}`);
  const wb = await WsClient.open(`${cluster.ready.connect[1]}?token=${b.token}`);
  try {
    for (const w of [wa, wb]) {
      w.send({ op: "join", room, ref: "j" });
      await w.op("joined", "j", 10_000);
    }
    // a's send goes to the logic in node 0 in-process; its push to b crosses to node 1 over gRPC.
    wa.send({ op: "send", room, body: "hello from node 0", ref: "s1" });
    const ack = await wa.op("ack", "s1", 10_000);
    const atB = await wb.next((f) => f.op === "msg" && f.id === ack.id, 10_000);
    expect(atB.body).toBe("hello from node 0");
    await wa.next((f) => f.op === "msg" && f.id === ack.id, 10_000);
    // And back: node 1's connect → node 1's logic, pushed to node 0.
    wb.send({ op: "send", room, body: "hello from node 1", ref: "s2" });
    const ack2 = await wb.op("ack", "s2", 10_000);
    expect((await wa.next((f) => f.op === "msg" && f.id === ack2.id, 10_000)).body).toBe("hello from node 1");
    expect(ack2.seq).toBe(ack.seq + 1);
    // Every node hosts a logic, so every api and connect calls the one in its process: nobody
    // holds a TCP connection to a logic gRPC port (P+20, P+21), though both are registered.
    const logicPorts = [cluster.base + 20, cluster.base + 21];
    expect(establishedTo(logicPorts)).toBe(0);
  } finally {
    wa.ws.close();
    wb.ws.close();
  }
}, 60_000);

test("SIGKILL of a node process (api, logic, task and connect at once) loses no acknowledged message", async () => {
  if (!cluster) throw new Error("no cluster");
  const [api0, api1] = cluster.ready.api;
  const room = uniqueName("colocrash");
  // One at a time: three argon2id hashes at once may meet the hashing pool's limit on a loaded box.
  const s = await registerUser(api0);
  const a = await registerUser(api0);
  const b = await registerUser(api1);
  const onNode0 = new Receiver(api1, a.token, room);
  const onNode1 = new Receiver(api1, b.token, room);
  await onNode0.start(cluster.ready.connect[0]);
  await onNode1.start(cluster.ready.connect[1]);
  // Sends alternate between the two api instances, so both nodes' logic accept messages.
  let turn = 0;
  const sender = new PacedSender(() => (turn++ % 2 ? api1 : api0), s.token, room);

  // Messages flow before the kill and after it (wait-for-event, not fixed counts: the box is shared).
  await eventually(() => sender.acked.length >= 20, 30_000);
  const node0 = cluster.pid("node", 0);
  process.kill(node0, "SIGKILL");
  const atKill = sender.acked.length;
  await eventually(() => sender.acked.length >= atKill + 40, 60_000);
  await sender.stop();

  const acked = sender.acked;
  expect(acked.map((x) => x.seq)).toEqual(Array.from({ length: acked.length }, (_, i) => i + 1));
  for (const r of [onNode0, onNode1]) {
    await eventually(() => acked.every((x) => r.got.get(x.seq) === x.id), 30_000);
  }
  expect(onNode0.reconnects).toBeGreaterThanOrEqual(1);
  // The supervisor started node 0 again.
  await eventually(() => cluster!.pid("node", 0) !== node0, 30_000);

  const db = await mysql.createConnection({ uri: `mysql://root@127.0.0.1:${cluster.base + 1}/bunchat`, supportBigNumbers: true, bigNumberStrings: true });
  try {
    await eventually(async () => {
      const [rows] = await db.query("SELECT COUNT(*) AS n FROM messages WHERE conv = ?", [`room:${room}`]);
      return Number((rows as { n: number }[])[0].n) === acked.length;
    }, 30_000);
    const [rows] = await db.query("SELECT id, seq FROM messages WHERE conv = ? ORDER BY seq", [`room:${room}`]);
    expect((rows as { id: string; seq: number }[]).map((r) => `${r.seq}:${r.id}`)).toEqual(acked.map((x) => `${x.seq}:${x.id}`));
  } finally {
    await db.end();
    onNode0.stop();
    onNode1.stop();
  }
}, 150_000);
