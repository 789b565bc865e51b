// Calls between tiers are authenticated (issue 10 item 2, CONTRACT.md v1.1): every method of
// LogicRPC and ConnectRPC refuses a caller without the cluster secret, or with a wrong one, with
// gRPC UNAUTHENTICATED, runs nothing and counts it; rotation accepts every listed secret; logic
// takes a sender's name from its own records; a role started alone off loopback without a secret
// refuses to start and names IM_CLUSTER_SECRET.
import { afterAll, beforeAll, expect, test } from "bun:test";
import * as grpc from "@grpc/grpc-js";
import type { Registry } from "prom-client";
import { makeClient, type Client } from "../src/shared/rpc.ts";
import { ClusterAuth, clusterAuthFor, SECRET_METADATA_KEY } from "../src/shared/cluster-auth.ts";
import { ConfigError, loadConfig } from "../src/shared/config.ts";
import { etcdTarget } from "../src/shared/resolver.ts";
import { partitionOf, redisKeys } from "../src/shared/keys.ts";
import { entryFields, parseEvent } from "../src/shared/stream.ts";
import { LOGIC_METHODS, LogicService, LOGIC_SERVICE, type LogicApi } from "../proto/logic.ts";
import { ConnectService, type ConnectApi } from "../proto/connect.ts";
import { startCluster, type TestCluster } from "./support/cluster.ts";
import { http, registerUser, uniqueName } from "./support/http.ts";
import { WsClient } from "./support/connect.ts";
import { dmConv } from "../src/shared/protocol.ts";

let c: TestCluster;
const closers: (() => void)[] = [];
const randomSecret = () => Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64url");

beforeAll(async () => {
  c = await startCluster({ logic: 1, api: 1, connect: 1, task: 1 });
});
afterAll(async () => {
  for (const close of closers) close();
  await c?.stop();
});

function logicClient(auth?: ClusterAuth): Client<LogicApi> {
  const t = etcdTarget(c.discovery(), LOGIC_SERVICE);
  const client = makeClient<LogicApi>(LogicService, t.target, 3000, auth);
  closers.push(() => client.close(), t.release);
  return client;
}

function connectClient(auth?: ClusterAuth): Client<ConnectApi> {
  const client = makeClient<ConnectApi>(ConnectService, c.connect[0].rpcAddr, 3000, auth);
  closers.push(() => client.close());
  return client;
}

async function refusedCount(registry: Registry): Promise<number> {
  const m = await registry.getSingleMetric("bunchat_rpc_unauthenticated_total")?.get();
  return (m?.values ?? []).reduce((a, v) => a + v.value, 0);
}

/** A plausible request per method: what an attacker would send to do harm. */
const logicRequests = (name: string): Record<(typeof LOGIC_METHODS)[number], unknown> => ({
  register: { userName: name, password: "correct-horse-1" },
  login: { userName: name, password: "correct-horse-1" },
  logout: { token: "x" },
  authenticate: { tokens: ["x"] },
  send: { items: [{ from: { userId: 1, userName: "mallory" }, room: "lobby", body: "forged" }] },
  presence: { ops: [{ k: "join", inst: "fake", conn: 1, user: { userId: 1, userName: "mallory" }, room: "lobby" }] },
  roomInfo: { room: "lobby" },
  history: { userId: 1, conv: "dm:1:2", maxLimit: 200 },
  conversations: { userId: 1 },
  markRead: { items: [{ user: { userId: 1, userName: "mallory" }, conv: "dm:1:2", seq: 1 }] },
  typing: { user: { userId: 1, userName: "mallory" }, conv: "room:lobby" },
  userByName: { name },
});

/** Opens a raw pipe stream with the given metadata, sends one call frame, and returns the call's final gRPC status. */
async function rawCall(svc: typeof LogicService, addr: string, secret: string | undefined, frame: unknown): Promise<grpc.StatusObject> {
  const Ctor = grpc.makeGenericClientConstructor(svc.def, "svc");
  const raw = new Ctor(addr, grpc.credentials.createInsecure()) as unknown as { pipe(md: grpc.Metadata): grpc.ClientDuplexStream<unknown, unknown>; close(): void };
  try {
    const md = new grpc.Metadata();
    if (secret !== undefined) md.set(SECRET_METADATA_KEY, secret);
    const call = raw.pipe(md);
    const status = new Promise<grpc.StatusObject>((res) => call.on("status", res));
    call.on("error", () => undefined);
    call.on("data", () => undefined);
    call.write(frame);
    call.end();
    return await status;
  } finally {
    raw.close();
  }
}

for (const [label, secret] of [
  ["no credentials", undefined],
  ["a wrong secret", randomSecret()],
] as const) {
  test(`every LogicRPC and ConnectRPC method refuses ${label} with gRPC UNAUTHENTICATED, runs nothing, and counts it`, async () => {
    const name = uniqueName("ia");
    const reqs = logicRequests(name);
    expect(Object.keys(reqs).sort()).toEqual([...LOGIC_METHODS].sort());
    const before = { logic: await refusedCount(c.logic[0].registry), connect: await refusedCount(c.connect[0].registry) };
    for (const m of LOGIC_METHODS) {
      const st = await rawCall(LogicService, `127.0.0.1:${c.logic[0].port}`, secret, { n: 1, m, req: reqs[m] });
      expect({ m, code: st.code }).toEqual({ m, code: grpc.status.UNAUTHENTICATED });
    }
    for (const m of ConnectService.methods) {
      const st = await rawCall(ConnectService, c.connect[0].rpcAddr, secret, { n: 1, m, req: { events: [] } });
      expect({ m, code: st.code }).toEqual({ m, code: grpc.status.UNAUTHENTICATED });
    }
    // Nothing ran: the refused register did not take the name.
    expect((await http(c.apiUrl(), "POST", "/api/users", { body: { userName: name, password: "correct-horse-1" } })).status).toBe(201);
    expect(await refusedCount(c.logic[0].registry)).toBe(before.logic + LOGIC_METHODS.length);
    expect(await refusedCount(c.connect[0].registry)).toBe(before.connect + ConnectService.methods.length);
  });
}

test("our own client, refused, fails every method with INTERNAL (a deployment fault), never a client-facing 401", async () => {
  const logic = logicClient(new ClusterAuth([randomSecret()]));
  const reqs = logicRequests(uniqueName("ic"));
  for (const m of LOGIC_METHODS) {
    const err = await logic[m](reqs[m] as never).then(
      () => undefined,
      (e) => e,
    );
    expect({ m, code: err?.code, message: err?.message }).toEqual({ m, code: "INTERNAL", message: "internal call refused: cluster credentials do not match" });
  }
  const push = connectClient(undefined);
  const err = await push.push({ events: [] }).catch((e) => e);
  expect(err?.code).toBe("INTERNAL");
});

test("rotation: a server listing new,old accepts callers sending either; the cluster's own secret works", async () => {
  const [current] = c.config.clusterSecrets;
  const next = randomSecret();
  const rotating = new ClusterAuth([next, current]);
  const md = (s: string) => {
    const m = new grpc.Metadata();
    m.set(SECRET_METADATA_KEY, s);
    return m;
  };
  expect(rotating.verify(md(next))).toBe(true);
  expect(rotating.verify(md(current))).toBe(true);
  expect(rotating.verify(md(randomSecret()))).toBe(false);
  expect(rotating.verify(new grpc.Metadata())).toBe(false);
  // Only the first secret is sent: during a rotation every server lists new,old before any caller
  // lists the new one first (README "Security").
  expect(new ClusterAuth([current, next]).outgoing).toBe(current);
  const ok = await logicClient(new ClusterAuth(c.config.clusterSecrets)).roomInfo({ room: "lobby" });
  expect(ok.roomId).toBe("lobby");
});

test("logic ignores a caller-supplied userName: the stored message carries the name from its records", async () => {
  const u = await registerUser(c.apiUrl());
  const room = uniqueName("r");
  const logic = logicClient(new ClusterAuth(c.config.clusterSecrets));
  const [res] = await logic.send({ items: [{ from: { userId: u.userId, userName: "admin" }, room, body: "hello" }] });
  expect(res.err).toBeUndefined();
  const h = await logic.history({ userId: u.userId, conv: `room:${room}`, maxLimit: 200 });
  expect(h.messages.map((m) => m.from)).toEqual([{ userId: u.userId, userName: u.userName }]);
  // A userId nobody registered cannot send at all.
  const [ghost] = await logic.send({ items: [{ from: { userId: 2 ** 40, userName: "ghost" }, room, body: "boo" }] });
  expect(ghost.err?.code).toBe("UNAUTHENTICATED");
});

test("logic ignores a caller-supplied userName in reads and typing: receipts carry the name from its records", async () => {
  const a = await registerUser(c.apiUrl());
  const b = await registerUser(c.apiUrl());
  const conv = dmConv(a.userId, b.userId);
  expect((await http(c.apiUrl(), "POST", `/api/users/${a.userId}/messages`, { token: b.token, body: { body: "hi" } })).status).toBe(202);
  const bws = await WsClient.open(c.wsUrl(0, b.token));
  closers.push(() => bws.ws.close());
  const logic = logicClient(new ClusterAuth(c.config.clusterSecrets));
  const [res] = await logic.markRead({ items: [{ user: { userId: a.userId, userName: "admin" }, conv, seq: 1 }] });
  expect(res.err).toBeUndefined();
  expect(await bws.op("receipt", undefined, 10_000)).toEqual({ op: "receipt", conv, user: { userId: a.userId, userName: a.userName }, readSeq: 1 });
  const [ghost] = await logic.markRead({ items: [{ user: { userId: 2 ** 40, userName: "ghost" }, conv: "room:lobby", seq: 1 }] });
  expect(ghost.err?.code).toBe("UNAUTHENTICATED");
  const typed = await logic.typing({ user: { userId: 2 ** 40, userName: "ghost" }, conv: "room:lobby" }).then(() => undefined, (e) => e);
  expect(typed?.code).toBe("UNAUTHENTICATED");
});

test("logic ignores a caller-supplied userName in presence: the join event names the user from its records", async () => {
  const u = await registerUser(c.apiUrl());
  const room = uniqueName("p");
  const logic = logicClient(new ClusterAuth(c.config.clusterSecrets));
  const [res] = await logic.presence({ ops: [{ k: "join", inst: "test-inst", conn: 1, user: { userId: u.userId, userName: "admin" }, room }] });
  expect(res.err).toBeUndefined();
  const keys = redisKeys(c.config.redisPrefix);
  const entries = await c.logic[0].redis.xrangeBuffer(keys.stream(partitionOf(`room:${room}`, c.config.streamPartitions)), "-", "+");
  const joins = entries
    .map(([, fields]) => entryFields(fields).d)
    .filter((d): d is Buffer => !!d)
    .map(parseEvent)
    .filter((e) => e.t === "p" && e.room === room);
  expect(joins.map((e) => (e as { user: unknown }).user)).toEqual([{ userId: u.userId, userName: u.userName }]);
  await logic.presence({ ops: [{ k: "leave", inst: "test-inst", conn: 1, user: { userId: u.userId, userName: "admin" }, room }] });
});

test("without a secret a role starts only on loopback; otherwise the error names IM_CLUSTER_SECRET", async () => {
  const cfg = (env: Record<string, string | undefined>) => loadConfig(env).config;
  expect(clusterAuthFor(cfg({})).open).toBe(true);
  for (const env of [
    { IM_HOST: "10.1.2.3" },
    { IM_REDIS_URL: "redis://redis.internal:6379" },
    { IM_MYSQL_URL: "mysql://root@10.0.0.5/bunchat" },
    { IM_ETCD_ENDPOINTS: "http://127.0.0.1:2379,http://etcd-2:2379" },
  ]) {
    const e = (() => {
      try {
        clusterAuthFor(cfg(env), { redis: true, mysql: true });
      } catch (err) {
        return err;
      }
    })();
    expect(e).toBeInstanceOf(ConfigError);
    expect(String(e)).toContain("IM_CLUSTER_SECRET");
  }
  expect(() => clusterAuthFor(cfg({ IM_HOST: "10.1.2.3", IM_CLUSTER_SECRET: "short" }))).toThrow(/at least 32/);
  expect(clusterAuthFor(cfg({ IM_HOST: "10.1.2.3", IM_CLUSTER_SECRET: randomSecret() })).open).toBe(false);
  // The real process: exits non-zero before touching any store, saying what to set.
  const p = Bun.spawn([process.execPath, "src/bin/logic.ts"], {
    cwd: `${import.meta.dir}/..`,
    env: { PATH: process.env.PATH ?? "", IM_HOST: "10.1.2.3", IM_LOG_LEVEL: "error" },
    stdout: "ignore",
    stderr: "pipe",
  });
  const [code, stderr] = await Promise.all([p.exited, new Response(p.stderr).text()]);
  expect(code).not.toBe(0);
  expect(stderr).toContain("IM_CLUSTER_SECRET must be set");
});

test("Accounts.userRefs: a caller's user ids named from logic's records; malformed or unknown ids are undefined", async () => {
  const u = await registerUser(c.apiUrl());
  const refs = await c.logic[0].accounts.userRefs([u.userId, 2 ** 40, 0, -1, 1.5, String(u.userId), undefined, null, u.userId]);
  const me = { userId: u.userId, userName: u.userName };
  expect(refs).toEqual([me, undefined, undefined, undefined, undefined, undefined, undefined, undefined, me]);
});
