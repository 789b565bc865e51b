// A task worker: owns a share of the stream partitions (see ownership.ts) and reads all of them
// with one "push" consumer (deliver to connect instances) and one "persist" consumer (write to
// MySQL), each with a handler per partition, and trims the streams below what both groups have
// acked. Everything is passed in, so several workers can run in one process.
import { createRedis } from "../shared/redis.ts";
import { Redis } from "ioredis";
import type { Registry } from "prom-client";
import type { Config } from "../shared/config.ts";
import { poolOf, type Db } from "../shared/db/index.ts";
import type { Discovery } from "../shared/discovery.ts";
import type { Logger } from "../shared/log.ts";
import { redisKeys, type Keys } from "../shared/keys.ts";
import { newRegistry, registered, type ReadyCheck } from "../shared/ops.ts";
import { AppError } from "../shared/errors.ts";
import { AckBuffer } from "./acks.ts";
import { StreamConsumer, type BatchHandler } from "./consumer.ts";
import { streamGauges, taskMetrics, type TaskMetrics } from "./metrics.ts";
import { PartitionOwnership } from "./ownership.ts";
import { PersistHandler } from "./persist.ts";
import { PersistWriter } from "./persist-writer.ts";
import { PushHandler } from "./push.ts";
import { ConnectSenders } from "./senders.ts";
import { clusterAuthFor } from "../shared/cluster-auth.ts";
import { trimStream } from "./trim.ts";
import type { ConnectApi } from "../../proto/connect.ts";

export const PUSH_GROUP = "push";
export const PERSIST_GROUP = "persist";
const GROUPS = [PUSH_GROUP, PERSIST_GROUP] as const;

export interface TaskWorkerOptions {
  config: Readonly<Config>;
  log: Logger;
  /** A Redis URL, or a factory of new connections (the worker closes what it gets). */
  redis: string | (() => Redis);
  db: Db;
  discovery: Discovery;
  instanceId: string;
  /** Defaults to a new registry labelled role=task. */
  registry?: Registry;
  /** How often owned streams are trimmed, in ms (default 5000). */
  trimIntervalMs?: number;
  /** Connect instances co-located in this process (src/bin/node.ts), by instance id: pushed to in-process. */
  localConnects?: ReadonlyMap<string, ConnectApi>;
  /** XREADGROUP BLOCK in ms (default 200: how long an added or removed partition may wait for the read in progress). */
  blockMs?: number;
}

export class TaskWorker {
  readonly registry: Registry;
  readonly metrics: TaskMetrics;
  private readonly log: Logger;
  private readonly keys: Keys;
  private readonly connect: () => Redis;
  private redis?: Redis;
  /** The push consumers' acks, all partitions together. */
  private acks?: AckBuffer;
  private senders?: ConnectSenders;
  /** The persist handlers' MySQL writes, all partitions together. */
  private writer?: PersistWriter;
  private ownership?: PartitionOwnership;
  /** Owned partitions being read. */
  private readonly running = new Set<number>();
  private consumers?: { push: StreamConsumer; persist: StreamConsumer };
  private trimTimer?: ReturnType<typeof setInterval>;
  private trimming = false;
  private started = false;
  private stopping?: Promise<void>;

  constructor(private readonly o: TaskWorkerOptions) {
    this.log = o.log.child({ component: "task", instance: o.instanceId });
    this.keys = redisKeys(o.config.redisPrefix);
    this.registry = o.registry ?? newRegistry("task");
    this.metrics = taskMetrics(this.registry);
    this.metrics.partitions.set(o.config.streamPartitions);
    streamGauges(this.registry, { partitions: () => this.running, redis: () => this.redis, stream: (p) => this.keys.stream(p) });
    const url = o.redis;
    this.connect =
      typeof url === "string"
        ? () => {
            const r = createRedis(url, { maxRetriesPerRequest: 2 });
            // Failing commands are logged (and retried) where they are made; this only keeps
            // ioredis from reporting every reconnect attempt as an unhandled error.
            r.on("error", (err) => this.log.debug("redis connection error", { err: err.message }));
            return r;
          }
        : url;
  }

  /** True once registered and serving; false again while stopping. */
  get ready(): boolean {
    return this.started && !this.stopping;
  }

  /** What /readyz checks: Redis, MySQL, and this worker's key in etcd (its lease is live). */
  readyChecks(): ReadyCheck[] {
    return [
      { name: "redis", check: async () => this.redis?.ping() ?? Promise.reject(new Error("not connected")) },
      { name: "mysql", check: () => poolOf(this.o.db).query("SELECT 1") },
      { name: "etcd registration", check: () => registered(this.o.discovery, "task", this.o.instanceId) },
    ];
  }

  ownedPartitions(): number[] {
    return this.ownership?.ownedPartitions() ?? [];
  }

  async start(): Promise<void> {
    const { discovery, instanceId, config } = this.o;
    const auth = clusterAuthFor(config, { redis: true, mysql: true });
    this.redis = this.connect();
    this.acks = new AckBuffer(this.redis, this.log);
    this.writer = new PersistWriter({ pool: poolOf(this.o.db), metrics: this.metrics });
    // Persist lingers: one multi-row insert per round per IM_PERSIST_LINGER_MS instead of one per
    // trickling entry. History meanwhile reads the pending set, so nothing is invisible for that long.
    this.consumers = { push: this.consumer(PUSH_GROUP, { intervalMs: config.pushIntervalMs }), persist: this.consumer(PERSIST_GROUP, { lingerMs: config.persistLingerMs }) };
    this.senders = new ConnectSenders({
      discovery,
      log: this.log.child({ component: "senders" }),
      onCall: (ok) => this.metrics.pushCalls.inc({ result: ok ? "ok" : "error" }),
      auth,
      registry: this.registry,
      local: this.o.localConnects,
    });
    await this.senders.start();
    this.ownership = new PartitionOwnership({
      discovery,
      id: instanceId,
      partitions: config.streamPartitions,
      log: this.log,
      onAcquire: async (p) => this.startPartition(p),
      onRelease: (p) => this.stopPartition(p),
    });
    await this.ownership.start();
    this.trimTimer = setInterval(() => void this.trim(), this.o.trimIntervalMs ?? 5000);
    this.started = true;
    this.log.info("task worker started", { partitions: config.streamPartitions, owned: this.ownedPartitions() });
  }

  /** Releases every partition after its in-flight batches, deregisters, and closes connections. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      clearInterval(this.trimTimer);
      await this.ownership?.stop();
      await Promise.all([this.consumers?.push.stop(), this.consumers?.persist.stop()]);
      await this.senders?.close();
      await this.redis?.quit().catch(() => this.redis?.disconnect());
      this.log.info("task worker stopped");
    })();
    return this.stopping;
  }

  private startPartition(p: number): void {
    const stream = this.keys.stream(p);
    const common = { keys: this.keys, metrics: this.metrics };
    const push = new PushHandler({ ...common, redis: this.redis!, senders: this.senders!, log: this.log.child({ group: PUSH_GROUP, partition: p }) });
    const persist = new PersistHandler({ ...common, stream, pool: poolOf(this.o.db), writer: this.writer, log: this.log.child({ group: PERSIST_GROUP, partition: p }) });
    this.consumers!.push.add(stream, this.counted(PUSH_GROUP, push.handle));
    this.consumers!.persist.add(stream, this.counted(PERSIST_GROUP, persist.handle));
    this.running.add(p);
    this.metrics.ownedPartitions.set(this.running.size);
  }

  private async stopPartition(p: number): Promise<void> {
    if (!this.running.delete(p)) return;
    this.metrics.ownedPartitions.set(this.running.size);
    const stream = this.keys.stream(p);
    await Promise.all([this.consumers!.push.remove(stream), this.consumers!.persist.remove(stream)]);
  }

  /** The group's consumer over every owned partition, on a blocking connection of its own. */
  private consumer(group: string, pace: { lingerMs?: number; intervalMs?: number }): StreamConsumer {
    return new StreamConsumer({ redis: this.redis!, blocking: this.connect(), group, consumer: this.o.instanceId, log: this.log, blockMs: this.o.blockMs, ...pace, acks: this.acks });
  }

  private counted(group: string, handler: BatchHandler): BatchHandler {
    return async (entries, signal) => {
      try {
        return await handler(entries, signal);
      } catch (err) {
        this.metrics.batchFailures.inc({ group });
        this.metrics.errors.inc(err instanceof AppError ? err.code : "UNAVAILABLE");
        throw err;
      }
    };
  }

  private async trim(): Promise<void> {
    if (this.trimming) return;
    this.trimming = true;
    try {
      await this.trimOwned();
    } finally {
      this.trimming = false;
    }
  }

  private async trimOwned(): Promise<void> {
    for (const p of this.running) {
      const stream = this.keys.stream(p);
      try {
        const removed = await trimStream(this.redis!, stream, GROUPS);
        if (removed) this.log.debug("stream trimmed", { stream, removed });
      } catch (err) {
        this.log.debug("stream trim skipped", { stream, err });
      }
    }
  }
}
