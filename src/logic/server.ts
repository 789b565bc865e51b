// The logic role: LogicRPC over gRPC, registered in etcd; owns auth, validation, ids, seqs and
// presence state, and appends accepted messages to the partition streams.
import type Redis from "ioredis";
import { createRedis, noLateWrites } from "../shared/redis.ts";
import type * as grpc from "@grpc/grpc-js";
import { Counter, Histogram } from "prom-client";
import type { Config } from "../shared/config.ts";
import type { Logger } from "../shared/log.ts";
import type { DbHandle } from "../shared/db/index.ts";
import type { Discovery, Registration, ServiceWatch } from "../shared/discovery.ts";
import { redisKeys, partitionOf } from "../shared/keys.ts";
import { addService, startServer, stopServer } from "../shared/rpc.ts";
import { clusterAuthFor, refusedCounter } from "../shared/cluster-auth.ts";
import { errorCounter, newRegistry, registered, serveOps, type ReadyCheck } from "../shared/ops.ts";
import { instrumentServer } from "../shared/rpc-metrics.ts";
import { AppError } from "../shared/errors.ts";
import { sql } from "drizzle-orm";
import { encodeEvent } from "../shared/stream.ts";
import { LIMITS } from "../shared/protocol.ts";
import { LogicService, LOGIC_SERVICE, type LogicApi, type ReadReq } from "../../proto/logic.ts";
import type { Result } from "../shared/batcher.ts";
import { CONNECT_SERVICE } from "../../proto/connect.ts";
import { SCRIPT_CLIENT, defineScripts, type Scripts } from "./scripts.ts";
import { defineReadScripts, type ReadScripts } from "./scripts-read.ts";
import { Accounts } from "./accounts.ts";
import { HashPool } from "./hash-pool.ts";
import { IN_DOUBT_MESSAGE, Messages } from "./messages.ts";
import { answerBudgetMs } from "../shared/send-deadline.ts";
import { Presence } from "./presence.ts";
import { ReadPositions } from "./read.ts";
import { Conversations } from "./conversations.ts";
import { Typing } from "./typing.ts";
import { userByName } from "./users.ts";
import { leaseWorkerId, type WorkerIdLease } from "./snowflake.ts";

const RECONCILE_EVERY_MS = 10_000;

/** Client-side errors of ioredis and mysql2 meaning "the store is not reachable now". */
const STORE_DOWN_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "PROTOCOL_CONNECTION_LOST", "ER_CON_COUNT_ERROR"]);
const STORE_DOWN_MESSAGES = /Stream isn't writeable|Connection is closed|Command timed out|connect ETIMEDOUT|All sentinels are unreachable|READONLY|LOADING|MASTERDOWN|NOREPLICAS/;

/** UNAVAILABLE for an error that says Redis or MySQL cannot be reached (not INTERNAL); else undefined. */
export function storeDown(e: unknown): AppError | undefined {
  if (e instanceof AppError) return undefined;
  const err = e as { name?: string; message?: string; code?: string; cause?: { code?: string; message?: string } };
  const code = err?.cause?.code ?? err?.code;
  if (err?.name === "MaxRetriesPerRequestError" || (code && STORE_DOWN_CODES.has(code)) || STORE_DOWN_MESSAGES.test(`${err?.message} ${err?.cause?.message}`))
    return new AppError("UNAVAILABLE", "a data store is unavailable; try again");
  return undefined;
}

export interface LogicDeps {
  config: Readonly<Config>;
  log: Logger;
  db: DbHandle;
  discovery: Discovery;
  instanceId: string;
}

export class LogicServer {
  readonly redis: Redis & Scripts & ReadScripts;
  readonly registry;
  readonly accounts: Accounts;
  readonly messages: Messages;
  readonly presence: Presence;
  readonly reads: ReadPositions;
  readonly conversations: Conversations;
  readonly typing: Typing;
  private readonly hashes: HashPool;
  private grpc?: grpc.Server;
  private ops?: ReturnType<typeof serveOps>;
  private reg?: Registration;
  private connectWatch?: ServiceWatch;
  private workerId?: WorkerIdLease;
  private reconcileTimer?: ReturnType<typeof setInterval>;
  private ready = false;
  port = 0;

  constructor(private readonly deps: LogicDeps) {
    const { config, log } = deps;
    // No offline queue and no re-sending after a reconnect: a send fails at once while Redis is
    // away and never runs later (src/shared/redis.ts).
    this.redis = defineReadScripts(defineScripts(createRedis(config.redisUrl, { ...SCRIPT_CLIENT, lazyConnect: true, ...noLateWrites(config.sendTimeoutMs) })));
    this.redis.on("error", (e) => log.warn("redis error", { err: e.message }));
    if (config.ackMode === "fsync") this.redis.on("ready", () => void this.checkFsync());
    const keys = redisKeys(config.redisPrefix);
    this.registry = newRegistry("logic");
    const hashes = (this.hashes = new HashPool({ concurrency: config.hashConcurrency, maxQueue: config.hashQueue, nice: config.hashNice, registry: this.registry }));
    this.accounts = new Accounts({ db: deps.db.db, redis: this.redis, keys, config, hashes });
    this.messages = new Messages({ db: deps.db.db, redis: this.redis, keys, config, accounts: this.accounts, ids: () => (this.workerId as WorkerIdLease).ids() });
    this.messages.log = log;
    this.redis.on("ready", () => this.messages.fence.forget());
    this.presence = new Presence({ redis: this.redis, keys, config, accounts: this.accounts, fence: this.messages.fence, log });
    this.reads = new ReadPositions({ db: deps.db.db, redis: this.redis, keys, streamPartitions: config.streamPartitions, log });
    this.conversations = new Conversations({
      db: deps.db.db,
      redis: this.redis,
      keys,
      fence: this.messages.fence,
      reads: this.reads,
      names: (ids) => this.accounts.names(ids),
      log,
    });
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
    const batch = new Histogram({ name: "bunchat_logic_batch_items", help: "Items per batched call", labelNames: ["method"], buckets: [1, 2, 5, 10, 25, 50, 100, 250, 500], registers: [this.registry] });
    const accepted = new Counter({ name: "bunchat_logic_messages_accepted_total", help: "Messages accepted", registers: [this.registry] });
    const sendTimeouts = new Counter({ name: "bunchat_logic_send_timeouts_total", help: "Sends answered UNAVAILABLE because the stores did not answer within the send budget", registers: [this.registry] });
    const messages = this.messages;
    /** A counter read from one of Messages' own running totals at scrape time. */
    const mirror = (name: string, help: string, total: () => number) =>
      new Counter({
        name,
        help,
        registers: [this.registry],
        collect() {
          this.reset();
          this.inc(total());
        },
      });
    mirror("bunchat_logic_send_unconfirmed_total", "Sends answered UNAVAILABLE in replica ack mode because no replica confirmed them in time", () => messages.unconfirmed);
    mirror(
      "bunchat_logic_send_in_doubt_total",
      "Sends answered UNAVAILABLE whose script call reached Redis (or may have) without an answer in time: outcome unknown",
      () => messages.inDoubt,
    );
    mirror(
      "bunchat_logic_send_in_doubt_stored_total",
      "Sends answered UNAVAILABLE that Redis had stored after all (it ran them before their deadline, answered after it)",
      () => messages.inDoubtStored,
    );
    mirror("bunchat_logic_seq_seeds_raised_total", "Conversation seq counters raised to MySQL's highest seq after Redis lost its tail", () => messages.fence.raised);
    const errors = errorCounter(this.registry, "logic");
    /** Per-item failures of a batched call (send, authenticate, presence), counted by code. */
    const countFailures = <R extends { err?: { code: string } }>(res: R[]): R[] => {
      for (const x of res) if (x.err) errors.inc(x.err.code);
      return res;
    };
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
        return countFailures(await this.accounts.authenticate(r.tokens));
      },
      send: async (r) => {
        batch.observe({ method: "send" }, r.items.length);
        // Answered within the caller's budget whatever Redis or MySQL do; the send script
        // refuses to store anything past it (Messages.send).
        const now = Date.now();
        const budget = answerBudgetMs(r, now, config.sendTimeoutMs);
        const answerBy = now + budget;
        let timer: ReturnType<typeof setTimeout> | undefined;
        const late = new Promise<null>((res) => (timer = setTimeout(res, budget, null)));
        const sending = this.messages.send(r.items, answerBy);
        const res = await Promise.race([sending, late]);
        clearTimeout(timer);
        if (!res) {
          sendTimeouts.inc(r.items.length);
          // Any acceptance that comes back after this answer is reported (never silent).
          sending.then(
            (late) => this.messages.reportStored(late.flatMap((x) => (x.ok ? [x.ok] : []))),
            () => undefined, // failed: nothing stored to report
          );
          return countFailures(r.items.map(() => ({ err: { code: "UNAVAILABLE" as const, message: IN_DOUBT_MESSAGE } })));
        }
        countFailures(res);
        accepted.inc(res.filter((x) => x.ok).length);
        return res;
      },
      presence: async (r) => {
        batch.observe({ method: "presence" }, r.ops.length);
        return countFailures(await this.presence.apply(r.ops));
      },
      roomInfo: (r) => this.presence.roomInfo(r?.room),
      history: (r) => this.messages.history({ ...r, maxLimit: r?.maxLimit ?? LIMITS.historyMaxLimit }),
      conversations: async (r) => ({ conversations: await this.conversations.list(r?.userId) }),
      markRead: async (r) => {
        const items: ReadReq[] = Array.isArray(r?.items) ? r.items : [];
        batch.observe({ method: "markRead" }, items.length);
        // The name in read/receipt pushes is logic's own record, not the caller's (CONTRACT v1.1).
        const users = await this.accounts.userRefs(items.map((i) => i?.user?.userId));
        return Promise.all(
          items.map((item, i) => {
            const user = users[i];
            if (!user) return fail(new AppError("UNAUTHENTICATED", "unknown user"), "markRead");
            return this.reads.markRead({ ...item, user }).then(ok, (e) => fail(e, "markRead"));
          }),
        );
      },
      typing: async (r) => {
        const [user] = await this.accounts.userRefs([r?.user?.userId]);
        if (!user) throw new AppError("UNAUTHENTICATED", "unknown user");
        await this.typing.typing({ user, conv: r.conv });
        return null;
      },
      userByName: (r) => userByName(this.deps.db.db, r?.name),
    };
    for (const m of Object.keys(impl)) {
      const fn = impl[m];
      impl[m] = async (req) => {
        try {
          return await fn(req);
        } catch (e) {
          const err = storeDown(e) ?? e;
          errors.inc(err instanceof AppError ? err.code : "INTERNAL");
          throw err;
        }
      };
    }
    return instrumentServer(LogicService, impl, this.registry);
  }

  async start(): Promise<void> {
    const { config, log, discovery, instanceId } = this.deps;
    await this.redis.connect();
    this.workerId = await leaseWorkerId(discovery, instanceId, (n) => log.info("snowflake worker id", { workerId: n }));
    const impl = this.api();
    // Bound to the internal address only; every call must carry the cluster secret.
    const auth = { auth: clusterAuthFor(config, { redis: true, mysql: true }), onRefused: refusedCounter(this.registry) };
    if (auth.auth.open) log.warn("IM_CLUSTER_SECRET is not set: internal calls are not authenticated (loopback-only setup)");
    const { server, port } = await startServer((s) => addService(s, LogicService, impl, log), config.host, config.logicPort, auth);
    this.grpc = server;
    this.port = port;
    this.reg = await discovery.register(LOGIC_SERVICE, { id: instanceId, addr: `${config.host}:${port}` });
    this.ops = serveOps(config.metricsHost, config.metricsPort, { registry: this.registry, live: () => this.ready, checks: this.readyChecks() });
    // A connect instance that vanishes from etcd is cleaned up (presence leave, routing entries).
    this.connectWatch = await discovery.watch(CONNECT_SERVICE, () => this.scheduleReconcile());
    this.reconcileTimer = setInterval(() => this.scheduleReconcile(), RECONCILE_EVERY_MS);
    this.reads.start();
    this.ready = true;
    log.info("logic ready", { port, metricsPort: this.ops.port });
  }

  /** fsync ack mode relies on Redis's appendfsync always: say loudly when the server is not set so. */
  private async checkFsync(): Promise<void> {
    try {
      const [, v] = (await this.redis.config("GET", "appendfsync")) as string[];
      if (v !== "always") this.deps.log.error("IM_ACK_MODE=fsync but Redis runs appendfsync " + v + ": acknowledged sends may be lost with the Redis host", {});
    } catch (e) {
      this.deps.log.warn("cannot check Redis appendfsync (CONFIG GET refused?)", { err: (e as Error).message });
    }
  }

  /** What /readyz checks: Redis, MySQL, and this instance's key in etcd (the lease is live). */
  private readyChecks(): ReadyCheck[] {
    const { discovery, instanceId, db } = this.deps;
    return [
      { name: "redis", check: () => this.redis.ping() },
      { name: "mysql", check: () => db.db.execute(sql`SELECT 1`) },
      { name: "etcd registration", check: () => registered(discovery, LOGIC_SERVICE, instanceId) },
    ];
  }

  get metricsPort(): number {
    return this.ops?.port ?? 0;
  }

  private reconciling?: Promise<void>;
  private scheduleReconcile() {
    if (this.reconciling) return;
    this.reconciling = (async () => {
      try {
        // A fresh read, not the watch's cache, taken after the known instances (see reconcile).
        const prefix = this.deps.discovery.serviceKey(CONNECT_SERVICE);
        await this.presence.reconcile(async () => new Set((await this.deps.discovery.etcd.getAll().prefix(prefix).keys()).map((k) => k.slice(prefix.length))));
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
    await this.workerId?.close().catch(() => undefined);
    this.ops?.stop(true);
    this.hashes.close();
    this.redis.disconnect();
  }
}
