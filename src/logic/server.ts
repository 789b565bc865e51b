// The logic role: LogicRPC over gRPC, registered in etcd; owns auth, validation, ids, seqs and
// presence state, and appends accepted messages to the partition streams.
import Redis from "ioredis";
import type * as grpc from "@grpc/grpc-js";
import { Counter, Histogram } from "prom-client";
import type { Config } from "../shared/config.ts";
import type { Logger } from "../shared/log.ts";
import type { DbHandle } from "../shared/db/index.ts";
import type { Discovery, Registration, ServiceWatch } from "../shared/discovery.ts";
import { redisKeys, partitionOf } from "../shared/keys.ts";
import { addService, startServer, stopServer } from "../shared/rpc.ts";
import { newRegistry, serveOps } from "../shared/ops.ts";
import { encodeEvent } from "../shared/stream.ts";
import { LIMITS } from "../shared/protocol.ts";
import { LogicService, LOGIC_SERVICE, type LogicApi, type ReadReq } from "../../proto/logic.ts";
import { AppError } from "../shared/errors.ts";
import type { Result } from "../shared/batcher.ts";
import { CONNECT_SERVICE } from "../../proto/connect.ts";
import { defineScripts, type Scripts } from "./scripts.ts";
import { Accounts } from "./accounts.ts";
import { Messages } from "./messages.ts";
import { Presence } from "./presence.ts";
import { ReadPositions, withReadState } from "./read.ts";
import { Typing } from "./typing.ts";
import { userByName } from "./users.ts";
import { Snowflake, leaseWorkerId } from "./snowflake.ts";

const RECONCILE_EVERY_MS = 10_000;

export interface LogicDeps {
  config: Readonly<Config>;
  log: Logger;
  db: DbHandle;
  discovery: Discovery;
  instanceId: string;
}

export class LogicServer {
  readonly redis: Redis & Scripts;
  readonly registry;
  readonly accounts: Accounts;
  readonly messages: Messages;
  readonly presence: Presence;
  readonly reads: ReadPositions;
  readonly typing: Typing;
  private ids?: Snowflake;
  private grpc?: grpc.Server;
  private ops?: ReturnType<typeof serveOps>;
  private reg?: Registration;
  private connectWatch?: ServiceWatch;
  private releaseWorkerId?: () => Promise<void>;
  private reconcileTimer?: ReturnType<typeof setInterval>;
  private ready = false;
  port = 0;

  constructor(private readonly deps: LogicDeps) {
    const { config, log } = deps;
    this.redis = defineScripts(new Redis(config.redisUrl, { enableAutoPipelining: true, maxRetriesPerRequest: 2, lazyConnect: true }));
    this.redis.on("error", (e) => log.warn("redis error", { err: e.message }));
    const keys = redisKeys(config.redisPrefix);
    this.registry = newRegistry("logic", deps.instanceId);
    this.accounts = new Accounts({ db: deps.db.db, redis: this.redis, keys, config });
    this.messages = new Messages({ db: deps.db.db, redis: this.redis, keys, config, accounts: this.accounts, ids: () => this.ids as Snowflake });
    this.presence = new Presence({ redis: this.redis, keys, config, accounts: this.accounts, log });
    this.reads = new ReadPositions({ db: deps.db.db, redis: this.redis, keys, streamPartitions: config.streamPartitions, log });
    this.typing = new Typing({ redis: this.redis, keys, streamPartitions: config.streamPartitions });
  }

  private impl?: LogicApi;

  /** The LogicApi implementation served over gRPC (also callable in-process). */
  api(): LogicApi {
    this.impl ??= this.buildApi();
    return this.impl;
  }

  private buildApi(): LogicApi {
    const { config } = this.deps;
    const keys = redisKeys(config.redisPrefix);
    const calls = new Counter({ name: "bunchat_logic_rpc_calls_total", help: "LogicRPC calls by method", labelNames: ["method"], registers: [this.registry] });
    const batch = new Histogram({ name: "bunchat_logic_batch_items", help: "Items per batched call", labelNames: ["method"], buckets: [1, 2, 5, 10, 25, 50, 100, 250, 500], registers: [this.registry] });
    const accepted = new Counter({ name: "bunchat_logic_messages_accepted_total", help: "Messages accepted", registers: [this.registry] });
    const kick = async (userId: number, sid: string, conv: string) => {
      await this.redis.xadd(keys.stream(partitionOf(conv, config.streamPartitions)), "*", "n", 0, "d", encodeEvent({ t: "k", userId, sid }));
    };
    const ok = <T>(v: T): Result<T> => ({ ok: v });
    const fail = (e: unknown, op: string): Result<never> => {
      if (e instanceof AppError) return { err: e.toJSON() };
      this.deps.log.warn("logic op failed", { op, err: e });
      return { err: { code: "UNAVAILABLE", message: "store unavailable" } };
    };
    const impl: LogicApi = {
      register: (r) => this.accounts.register(r),
      login: (r) => this.accounts.login(r),
      logout: async (r) => {
        await this.accounts.logout(r?.token, kick);
        return null;
      },
      authenticate: async (r) => {
        batch.observe({ method: "authenticate" }, r.tokens.length);
        return this.accounts.authenticate(r.tokens);
      },
      send: async (r) => {
        batch.observe({ method: "send" }, r.items.length);
        const res = await this.messages.send(r.items);
        accepted.inc(res.filter((x) => x.ok).length);
        return res;
      },
      presence: async (r) => {
        batch.observe({ method: "presence" }, r.ops.length);
        return this.presence.apply(r.ops);
      },
      roomInfo: (r) => this.presence.roomInfo(r?.room),
      history: (r) => this.messages.history({ ...r, maxLimit: r?.maxLimit ?? LIMITS.historyMaxLimit }),
      conversations: async (r) => ({
        conversations: await withReadState(this.reads, (ids) => this.accounts.names(ids), r.userId, await this.messages.conversations(r.userId)),
      }),
      markRead: async (r) => {
        const items: ReadReq[] = Array.isArray(r?.items) ? r.items : [];
        batch.observe({ method: "markRead" }, items.length);
        // The name in read/receipt pushes is logic's own record, not the caller's (CONTRACT v1.1).
        const names = await this.accounts.names([...new Set(items.map((i) => i?.user?.userId).filter((id) => Number.isSafeInteger(id) && id > 0))]);
        return Promise.all(
          items.map((item) => {
            const userName = names.get(item?.user?.userId);
            if (userName === undefined) return fail(new AppError("BAD_REQUEST", "unknown user"), "markRead");
            return this.reads.markRead({ ...item, user: { userId: item.user.userId, userName } }).then(ok, (e) => fail(e, "markRead"));
          }),
        );
      },
      typing: async (r) => {
        const userId = r?.user?.userId;
        const userName = Number.isSafeInteger(userId) && userId > 0 ? (await this.accounts.names([userId])).get(userId) : undefined;
        if (userName === undefined) throw new AppError("BAD_REQUEST", "unknown user");
        await this.typing.typing({ user: { userId, userName }, conv: r.conv });
        return null;
      },
      userByName: (r) => userByName(this.deps.db.db, r?.name),
    };
    for (const m of Object.keys(impl)) {
      const fn = impl[m];
      impl[m] = (req) => {
        calls.inc({ method: m });
        return fn(req);
      };
    }
    return impl;
  }

  async start(): Promise<void> {
    const { config, log, discovery, instanceId } = this.deps;
    await this.redis.connect();
    this.releaseWorkerId = await leaseWorkerId(discovery, instanceId, (n) => {
      this.ids = new Snowflake(n);
      log.info("snowflake worker id", { workerId: n });
    });
    const impl = this.api();
    const { server, port } = await startServer((s) => addService(s, LogicService, impl, log), "0.0.0.0", config.logicPort);
    this.grpc = server;
    this.port = port;
    this.ops = serveOps(config.metricsPort, this.registry, () => this.ready);
    this.reg = await discovery.register(LOGIC_SERVICE, { id: instanceId, addr: `${config.host}:${port}` });
    // A connect instance that vanishes from etcd is cleaned up (presence leave, routing entries).
    this.connectWatch = await discovery.watch(CONNECT_SERVICE, () => this.scheduleReconcile());
    this.reconcileTimer = setInterval(() => this.scheduleReconcile(), RECONCILE_EVERY_MS);
    this.reads.start();
    this.ready = true;
    log.info("logic ready", { port, metricsPort: this.ops.port });
  }

  get metricsPort(): number {
    return this.ops?.port ?? 0;
  }

  private reconciling?: Promise<void>;
  private scheduleReconcile() {
    if (this.reconciling) return;
    this.reconciling = (async () => {
      try {
        // A fresh read, not the watch's cache: an instance registers before it sends any op.
        const keys = await this.deps.discovery.etcd.getAll().prefix(this.deps.discovery.serviceKey(CONNECT_SERVICE)).keys();
        const alive = new Set(keys.map((k) => k.slice(this.deps.discovery.serviceKey(CONNECT_SERVICE).length)));
        await this.presence.reconcile(alive);
      } catch (e) {
        this.deps.log.warn("presence reconcile failed", { err: e });
      } finally {
        this.reconciling = undefined;
      }
    })();
  }

  /** Deregisters first so callers move on, then drains in-flight calls and closes clients. */
  async stop(): Promise<void> {
    this.ready = false;
    clearInterval(this.reconcileTimer);
    await this.reg?.close().catch(() => undefined);
    await this.connectWatch?.close().catch(() => undefined);
    if (this.grpc) await stopServer(this.grpc);
    await this.reconciling;
    await this.reads.stop().catch(() => undefined);
    await this.releaseWorkerId?.().catch(() => undefined);
    this.ops?.stop(true);
    this.redis.disconnect();
  }
}
