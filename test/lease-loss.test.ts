// etcd lease loss on real processes (redis, mariadb, etcd; logic, task, connect in-process): a
// connect instance whose lease is revoked is cleaned up by logic's reconcile while its sockets are
// still open. A client that follows the contract (stays connected; on 1001/1012 reconnects via
// /api/gateway, rejoins and syncs) must still get every message of its room, in seq order.
import { afterAll, beforeAll, expect, test } from "bun:test";
import Redis from "ioredis";
import { CONNECT_SERVICE } from "../proto/connect.ts";
import { redisKeys } from "../src/shared/keys.ts";
import { Discovery } from "../src/shared/discovery.ts";
import { leaseWorkerId } from "../src/logic/snowflake.ts";
import { PartitionOwnership } from "../src/task/ownership.ts";
import { ConnectServer } from "../src/connect/server.ts";
import { newInstanceId } from "../src/shared/instance.ts";
import { etcdTarget } from "../src/shared/resolver.ts";
import { makeClient } from "../src/shared/rpc.ts";
import { ClusterAuth } from "../src/shared/cluster-auth.ts";
import { LOGIC_SERVICE, LogicService, type LogicApi } from "../proto/logic.ts";
import { startCluster, type TestCluster } from "./support/cluster.ts";
import { WsClient } from "./support/connect.ts";
import { eventually, http, registerUser } from "./support/http.ts";

let c: TestCluster;
let redis: Redis;

beforeAll(async () => {
  c = await startCluster({ logic: 1, api: 1, connect: 1, task: 1, config: { rateLimitPerSec: 1000, rateLimitBurst: 1000 } });
  redis = new Redis(c.config.redisUrl);
});

afterAll(async () => {
  redis?.disconnect();
  await c?.stop();
});

/** Revokes the etcd lease a key is bound to, as an expiry after a stall would end it; returns the lease id. */
async function revokeLeaseOf(key: string): Promise<string> {
  const etcd = c.discovery().etcd;
  const res = await etcd.get(key).exec();
  const lease = res.kvs[0]?.lease;
  if (!lease || String(lease) === "0") throw new Error(`no lease on ${key}`);
  await etcd.leaseClient.leaseRevoke({ ID: lease });
  return String(lease);
}

/** A room member that behaves as the contract asks: on 1001/1012 it reconnects through the gateway, rejoins and syncs. */
class RoomMember {
  readonly seqs: number[] = [];
  reconnects = 0;
  ws!: WsClient;
  private stopped = false;

  constructor(
    private readonly token: string,
    private readonly room: string,
  ) {}

  async connect(url: string): Promise<void> {
    this.ws = await WsClient.open(`${url}?token=${encodeURIComponent(this.token)}`);
    const ws = this.ws;
    // join and sync together: connect holds the room's live messages until the sync's replay is
    // out, so they come in seq order (a sync sent only after `joined` could follow a live one).
    ws.send({ op: "join", room: this.room, ref: "j" });
    ws.send({ op: "sync", conv: `room:${this.room}`, afterSeq: this.last(), ref: "s" });
    await ws.op("joined", "j", 10_000);
    void this.pump(ws);
  }

  last(): number {
    return this.seqs.at(-1) ?? 0;
  }

  /** Takes msg frames as they come (dropping repeats, which the contract allows after a fault). */
  private async pump(ws: WsClient): Promise<void> {
    for (;;) {
      const f = await Promise.race([ws.op("msg", undefined, 60_000).catch(() => undefined), ws.closed]);
      if (!f || "code" in f) break;
      if (f.seq > this.last()) this.seqs.push(f.seq);
    }
    const { code } = await ws.closed;
    if (this.stopped || (code !== 1001 && code !== 1012)) return;
    this.reconnects++;
    // As a client would: ask the gateway, and try again while the instance it names refuses (503).
    await eventually(async () => {
      await this.connect((await http(c.apiUrl(), "GET", "/api/gateway")).body?.wsUrl);
      return true;
    }, 20_000, "a reconnect");
  }

  close(): void {
    this.stopped = true;
    this.ws.ws.close();
  }
}

/**
 * A member joined on conn gets message 1; loseLease ends conn's lease and returns once logic has
 * cleaned up the lost registration; messages sent then and over the next seconds (during, and after
 * `recover`) must all reach the member, in order, and presence must be right again.
 */
async function memberKeepsEveryMessage(conn: ConnectServer, loseLease: (oldId: string) => Promise<void>, recover = async () => {}) {
  const sender = await registerUser(c.apiUrl());
  const bystander = await registerUser(c.apiUrl());
  const room = `ll-${crypto.randomUUID().slice(0, 8)}`;
  const member = new RoomMember(bystander.token, room);
  await member.connect(conn.wsUrl);
  const post = async (body: string) => {
    const r = await http(c.apiUrl(), "POST", `/api/rooms/${room}/messages`, { token: sender.token, body: { body } });
    expect(r.status).toBe(202);
    return r.body.seq as number;
  };
  expect(await post("before")).toBe(1);
  await eventually(() => member.last() === 1, 10_000, "the first message");

  // The lease ends; logic's reconcile sees the key gone and drops what the instance held.
  const keys = redisKeys(c.config.redisPrefix);
  const oldId = conn.registrationId;
  await loseLease(oldId);
  await eventually(async () => !(await redis.sismember(keys.instances, oldId)) && !(await redis.exists(keys.instanceHoldings(oldId))), 20_000, "logic's cleanup of the lost registration");

  // Messages sent after the loss, a few spread over time, all reach the member in order.
  let last = await post("in the gap");
  await recover();
  for (let i = 0; i < 5; i++) {
    last = await post(`after ${i}`);
    await Bun.sleep(600);
  }
  await eventually(() => member.last() === last, 30_000, `every message (have ${member.seqs.join(",")})`);
  expect(member.seqs).toEqual(Array.from({ length: last }, (_, i) => i + 1));

  // The instance is registered again and presence is right: the member is counted once.
  await eventually(async () => (await http(c.apiUrl(), "GET", `/api/rooms/${room}`, { token: sender.token })).body?.onlineCount === 1, 20_000, "room info");
  const info = await http(c.apiUrl(), "GET", `/api/rooms/${room}`, { token: sender.token });
  expect(info.body.members).toEqual([{ userId: bystander.userId, userName: bystander.userName }]);
  // It came back as a new registration, its sockets told to reconnect and sync (1012) once.
  await eventually(async () => conn.registrationId !== oldId && (await c.discovery().etcd.get(c.discovery().serviceKey(CONNECT_SERVICE, conn.registrationId)).string()) !== null, 20_000, "a new registration");
  expect(member.reconnects).toBe(1);
  member.close();
}

test("a connect instance whose lease is revoked keeps delivering every message to its room members", async () => {
  await memberKeepsEveryMessage(c.connect[0], (oldId) => revokeLeaseOf(c.discovery().serviceKey(CONNECT_SERVICE, oldId)).then(() => undefined));
}, 120_000);

test("a connect instance whose path to etcd stalls past the lease TTL keeps delivering every message", async () => {
  const proxy = stallableProxy(c.config.etcdEndpoints[0]);
  const d = new Discovery({ endpoints: [proxy.endpoint], prefix: c.config.etcdPrefix, leaseTtlSec: c.config.leaseTtlSec, log: c.log });
  const t = etcdTarget(d, LOGIC_SERVICE);
  const logic = makeClient<LogicApi>(LogicService, t.target, undefined, new ClusterAuth(c.config.clusterSecrets));
  const conn = new ConnectServer({ config: c.config, log: c.log.child({ role: "connect", stalled: true }), logic, discovery: d, instanceId: newInstanceId("connect") });
  await conn.start();
  try {
    await memberKeepsEveryMessage(conn, async () => proxy.pause(), async () => proxy.resume());
  } finally {
    proxy.resume();
    await conn.stop();
    logic.close();
    t.release();
    await d.close();
    proxy.stop();
  }
}, 120_000);

/**
 * A TCP proxy to etcd that can stall: while paused, bytes both ways are held (in order) and
 * delivered on resume, as a network blip or a stalled peer would; nothing is dropped.
 */
function stallableProxy(endpoint: string) {
  const { hostname, port } = new URL(endpoint);
  let paused = false;
  let held: (() => void)[] = [];
  const run = (f: () => void): void => {
    if (paused) held.push(f);
    else f();
  };
  /** Writes in order, keeping what the socket did not take for its drain. */
  type Out = { sock?: { write(d: Uint8Array): number }; queue: Uint8Array[] };
  const push = (o: Out, d: Uint8Array) => {
    o.queue.push(d);
    drain(o);
  };
  const drain = (o: Out) => {
    while (o.sock && o.queue.length) {
      const d = o.queue[0];
      const n = o.sock.write(d);
      if (n < d.length) {
        o.queue[0] = d.subarray(Math.max(n, 0));
        return;
      }
      o.queue.shift();
    }
  };
  type Pipe = { toUp: Out; toClient: Out; up?: { end(): void } };
  const server = Bun.listen<Pipe>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(client) {
        const pipe: Pipe = { toUp: { queue: [] }, toClient: { sock: client, queue: [] } };
        client.data = pipe;
        Bun.connect({
          hostname,
          port: Number(port),
          socket: {
            data: (_u, d) => {
              const copy = new Uint8Array(d);
              run(() => push(pipe.toClient, copy));
            },
            drain: () => drain(pipe.toUp),
            close: () => run(() => void client.end()),
            error: () => void client.end(),
          },
        }).then(
          (up) => {
            pipe.up = up;
            pipe.toUp.sock = up;
            drain(pipe.toUp);
          },
          () => void client.end(),
        );
      },
      data(client, d) {
        const copy = new Uint8Array(d);
        run(() => push(client.data.toUp, copy));
      },
      drain: (client) => drain(client.data.toClient),
      close: (client) => client.data.up?.end(),
    },
  });
  return {
    endpoint: `http://127.0.0.1:${server.port}`,
    pause: () => void (paused = true),
    resume: () => {
      paused = false;
      const fs = held;
      held = [];
      for (const f of fs) f();
    },
    stop: () => server.stop(true),
  };
}

test("a logic instance whose lease expires stops minting ids before another can claim its worker id", async () => {
  const proxy = stallableProxy(c.config.etcdEndpoints[0]);
  const prefix = `${c.config.etcdPrefix}/wid${crypto.randomUUID().slice(0, 6)}`;
  const log = c.log.child({ test: "snowflake" });
  const d1 = new Discovery({ endpoints: [proxy.endpoint], prefix, leaseTtlSec: c.config.leaseTtlSec, log });
  const d2 = new Discovery({ endpoints: c.config.etcdEndpoints, prefix, leaseTtlSec: c.config.leaseTtlSec, log });
  try {
    const a = await leaseWorkerId(d1, "logic-a", () => undefined);
    const first = await a.ids();
    expect(first.workerId).toBe(0);

    // The path to etcd stalls past the TTL: etcd expires a's lease and frees worker id 0.
    proxy.pause();
    const key = `${prefix}/workerids/0`;
    await eventually(async () => (await d2.etcd.get(key).string()) === null, 20_000, "worker id 0 freed by expiry");
    const b = await leaseWorkerId(d2, "logic-b", () => undefined);
    expect((await b.ids()).workerId).toBe(0);
    // a has not heard of the expiry yet, and must not mint with id 0 meanwhile.
    expect(() => a.ids(0)).toThrow("etcd lease not confirmed");
    await expect(Promise.resolve(a.ids(100))).rejects.toThrow("etcd lease not confirmed");

    // Back on the network: a learns its lease is gone and claims another id before minting again.
    proxy.resume();
    const again = await eventually(() => Promise.resolve(a.ids(0)).catch(() => undefined), 20_000, "a mints again");
    expect(again.workerId).not.toBe(0);
    const x = BigInt(again.next()), y = BigInt((await b.ids()).next());
    expect((x >> 12n) & 1023n).not.toBe((y >> 12n) & 1023n);
    await a.close();
    await b.close();
  } finally {
    proxy.resume();
    await d1.close();
    await d2.close();
    proxy.stop();
  }
}, 120_000);

test("a task worker whose lease expires stops its partitions before another worker takes them", async () => {
  const proxy = stallableProxy(c.config.etcdEndpoints[0]);
  const prefix = `${c.config.etcdPrefix}/own${crypto.randomUUID().slice(0, 6)}`;
  const log = c.log.child({ test: "ownership" });
  const ttl = c.config.leaseTtlSec;
  const dA = new Discovery({ endpoints: [proxy.endpoint], prefix, leaseTtlSec: ttl, log });
  const dB = new Discovery({ endpoints: c.config.etcdEndpoints, prefix, leaseTtlSec: ttl, log });
  // Which worker runs each partition now (from onAcquire until its onRelease resolved); a second one is a violation.
  const running = new Map<number, string>();
  const overlaps: string[] = [];
  const owner = (d: Discovery, id: string) =>
    new PartitionOwnership({
      discovery: d,
      id,
      partitions: 4,
      log,
      onAcquire: async (p) => {
        const other = running.get(p);
        if (other && other !== id) overlaps.push(`${id} acquired ${p} while ${other} ran it`);
        running.set(p, id);
      },
      onRelease: async (p) => {
        await Bun.sleep(50); // in-flight work finishing
        if (running.get(p) === id) running.delete(p);
      },
    });
  const a = owner(dA, "task-a");
  const b = owner(dB, "task-b");
  try {
    await a.start();
    await b.start();
    await eventually(() => a.ownedPartitions().length === 2 && b.ownedPartitions().length === 2, 20_000, "an even split");

    proxy.pause();
    const t0 = performance.now();
    await eventually(() => b.ownedPartitions().length === 4, (ttl + 10) * 1000, "b takes every partition");
    const takeoverMs = Math.round(performance.now() - t0);
    expect(a.ownedPartitions()).toEqual([]);
    expect(overlaps).toEqual([]);

    proxy.resume();
    await eventually(() => a.ownedPartitions().length === 2 && b.ownedPartitions().length === 2, 20_000, "a takes its share back");
    expect(overlaps).toEqual([]);
    console.log(JSON.stringify({ test: "ownership stall", leaseTtlSec: ttl, takeoverMs }));
  } finally {
    proxy.resume();
    await a.stop();
    await b.stop();
    await dA.close();
    await dB.close();
    proxy.stop();
  }
}, 120_000);
