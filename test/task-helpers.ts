// Helpers for the task tier tests: a scope per test (unique Redis and etcd prefixes), workers on
// their own Discovery (as separate processes would have), fake connect instances that are real
// gRPC servers registered in etcd, and a producer that appends entries the way logic does.
import { afterAll } from "bun:test";
import { Redis } from "ioredis";
import type { Server } from "@grpc/grpc-js";
import { ConnectService, type ConnectApi, type PushEvent } from "../proto/connect.ts";
import { pack } from "../src/shared/codec.ts";
import { loadConfig, type Config } from "../src/shared/config.ts";
import { openDb, type DbHandle } from "../src/shared/db/index.ts";
import { Discovery } from "../src/shared/discovery.ts";
import { redisKeys, partitionOf, type Keys } from "../src/shared/keys.ts";
import { createLogger, silentLogger, type Logger } from "../src/shared/log.ts";
import { dmConv, roomConv, type UserRef } from "../src/shared/protocol.ts";
import { addService, startServer, stopServer } from "../src/shared/rpc.ts";
import { encodeEvent, toMessage, type StreamEvent } from "../src/shared/stream.ts";
import { TaskWorker } from "../src/task/worker.ts";
import { getInfra, type Infra } from "./support/infra.ts";

export { eventually as waitFor } from "./support/http.ts";

const log: Logger = process.env.TEST_LOG ? createLogger({ level: "debug" }) : silentLogger;
let scopes = 0;
let nextMsgId = BigInt(Date.now()) << 20n;

export interface FakeConnect {
  id: string;
  addr: string;
  received: PushEvent[];
  /** ms from msg.ts to arrival, per message event. */
  lags: number[];
  calls: number;
  /** While set, push answers UNAVAILABLE-like failures (the call throws). */
  failing: boolean;
  stop(): Promise<void>;
  /** Dies without deregistering: the server is gone, its registration expires with the lease. */
  crash(): Promise<void>;
}

export class Scope {
  readonly config: Readonly<Config>;
  readonly keys: Keys;
  readonly redis: Redis;
  private readonly closers: (() => Promise<void>)[] = [];
  private seqs = new Map<string, number>();

  private constructor(
    readonly infra: Infra,
    readonly db: DbHandle,
    overrides: Partial<Config>,
  ) {
    const n = ++scopes;
    const tag = `t${process.pid}x${n}x${Date.now().toString(36)}`;
    this.config = loadConfig({}, {
      redisUrl: infra.redisUrl,
      mysqlUrl: infra.mysqlUrl,
      etcdEndpoints: infra.etcdEndpoints,
      etcdPrefix: `/test-${tag}`,
      redisPrefix: `${tag}:`,
      streamPartitions: 4,
      leaseTtlSec: 2,
      ...overrides,
    }).config;
    this.keys = redisKeys(this.config.redisPrefix);
    this.redis = new Redis(infra.redisUrl);
  }

  static async create(overrides: Partial<Config> = {}): Promise<Scope> {
    const infra = await getInfra();
    return new Scope(infra, openDb(infra.mysqlUrl), overrides);
  }

  discovery(): Discovery {
    const d = new Discovery({ endpoints: this.config.etcdEndpoints, prefix: this.config.etcdPrefix, leaseTtlSec: this.config.leaseTtlSec, log });
    this.closers.push(() => d.close());
    return d;
  }

  async worker(opts: { trimIntervalMs?: number; id?: string } = {}): Promise<TaskWorker> {
    const w = new TaskWorker({
      config: this.config,
      log,
      redis: this.config.redisUrl,
      db: this.db.db,
      discovery: this.discovery(),
      instanceId: opts.id ?? `task-${crypto.randomUUID().slice(0, 8)}`,
      trimIntervalMs: opts.trimIntervalMs,
    });
    await w.start();
    this.closers.push(() => w.stop());
    return w;
  }

  async connect(id = `connect-${crypto.randomUUID().slice(0, 8)}`): Promise<FakeConnect> {
    const fake: FakeConnect = { id, addr: "", received: [], lags: [], calls: 0, failing: false, stop: async () => {}, crash: async () => {} };
    const impl: ConnectApi = {
      push: async ({ events }: { events: PushEvent[] }) => {
        if (fake.failing) throw new Error("fake connect failing");
        fake.calls++;
        fake.received.push(...events);
        const now = Date.now();
        for (const e of events) if (e.t === "m") fake.lags.push(now - e.msg.ts);
        return null;
      },
    };
    const { server, port } = await startServer((s: Server) => addService(s, ConnectService, impl, log), "127.0.0.1", 0);
    fake.addr = `127.0.0.1:${port}`;
    // Registered under a lease of its own, so crash() can stop its keepalives the way a dead process would.
    const discovery = this.discovery();
    const lease = discovery.etcd.lease(this.config.leaseTtlSec);
    await lease.put(discovery.serviceKey("connect", id)).value(JSON.stringify({ id, addr: fake.addr })).exec();
    let stopped = false;
    fake.stop = async () => {
      if (stopped) return;
      stopped = true;
      await lease.revoke();
      await stopServer(server, 500);
    };
    fake.crash = async () => {
      stopped = true;
      server.forceShutdown();
      lease.release();
    };
    this.closers.push(fake.stop);
    return fake;
  }

  /** Appends a message the way logic does: next seq, XADD {n: seq, d}, ZADD pending. Returns the seq. */
  async send(conv: string, from: UserRef, body: string): Promise<number> {
    const seq = (this.seqs.get(conv) ?? 0) + 1;
    this.seqs.set(conv, seq);
    const ev: StreamEvent = { t: "m", id: String(nextMsgId++), conv, from, body, ts: Date.now() };
    await this.append(conv, ev, seq, pack(toMessage(ev, seq)));
    return seq;
  }

  /** Many messages in one pipeline (seq order per conversation is the array order). */
  async sendBulk(items: { conv: string; from: UserRef; body: string }[]): Promise<void> {
    const pipe = this.redis.pipeline();
    for (const { conv, from, body } of items) {
      const seq = (this.seqs.get(conv) ?? 0) + 1;
      this.seqs.set(conv, seq);
      const ev: StreamEvent = { t: "m", id: String(nextMsgId++), conv, from, body, ts: Date.now() };
      pipe.xadd(this.keys.stream(partitionOf(conv, this.config.streamPartitions)), "*", "n", String(seq), "d", encodeEvent(ev));
      pipe.zadd(this.keys.pending(conv), seq, pack(toMessage(ev, seq)));
    }
    await pipe.exec();
  }

  async append(conv: string, ev: StreamEvent, n: number, pendingMember?: Buffer): Promise<string> {
    const stream = this.keys.stream(partitionOf(conv, this.config.streamPartitions));
    const tx = this.redis.multi().xadd(stream, "*", "n", String(n), "d", encodeEvent(ev));
    if (pendingMember) tx.zadd(this.keys.pending(conv), n, pendingMember);
    const res = await tx.exec();
    return String(res![0][1]);
  }

  presence(room: string, event: "join" | "leave", user: UserRef, onlineCount: number) {
    return this.append(roomConv(room), { t: "p", room, event, user }, onlineCount);
  }

  kick(userId: number, sid: string) {
    return this.append(dmConv(userId, userId), { t: "k", userId, sid }, 0);
  }

  /** Every partition stream has been fully handled (nothing pending, all delivered) by the group. */
  async groupDone(group: string): Promise<boolean> {
    for (let p = 0; p < this.config.streamPartitions; p++) {
      const stream = this.keys.stream(p);
      if (!(await this.redis.exists(stream))) continue;
      const groups = (await this.redis.xinfo("GROUPS", stream)) as unknown[][];
      const g = groups.map(toMap).find((m) => m.get("name") === group);
      if (!g) return false;
      const last = ((await this.redis.xrevrange(stream, "+", "-", "COUNT", 1)) as [string, string[]][])[0]?.[0];
      if (Number(g.get("pending")) !== 0) return false;
      if (last && g.get("last-delivered-id") !== last) return false;
    }
    return true;
  }

  async rows(conv: string): Promise<{ id: string; seq: number; body: string; sender_id: number }[]> {
    const [rows] = await this.db.pool.query("SELECT id, seq, body, sender_id FROM messages WHERE conv = ? ORDER BY seq", [conv]);
    return (rows as { id: string; seq: number | string; body: string; sender_id: number | string }[]).map((r) => ({
      id: String(r.id),
      seq: Number(r.seq),
      body: r.body,
      sender_id: Number(r.sender_id),
    }));
  }

  async close(): Promise<void> {
    for (const c of this.closers.reverse()) await c().catch(() => undefined);
    this.redis.disconnect();
    await this.db.close();
  }
}

function toMap(flat: unknown[]): Map<string, unknown> {
  const m = new Map<string, unknown>();
  for (let i = 0; i + 1 < flat.length; i += 2) m.set(String(flat[i]), flat[i + 1]);
  return m;
}

/** Unique names for rooms and users per test. */
export function uniq(prefix: string): string {
  return `${prefix}${crypto.randomUUID().slice(0, 8)}`;
}

let nextUser = Math.floor(Math.random() * 1e6) * 1000;
export function user(): UserRef {
  const userId = ++nextUser;
  return { userId, userName: `u${userId}` };
}

/** Scope.create for one test file: every scope it makes is closed after the file's tests. */
export function scopedCreator(): (...args: Parameters<typeof Scope.create>) => Promise<Scope> {
  const scopes: Scope[] = [];
  afterAll(async () => {
    for (const s of scopes) await s.close();
  });
  return async (...args) => {
    const s = await Scope.create(...args);
    scopes.push(s);
    return s;
  };
}
