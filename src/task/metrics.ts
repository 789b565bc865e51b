// Prometheus metrics of one task worker, on its own registry (several workers may share a process).
// What is counted per message or per batch is a tally (src/shared/tally.ts): plain numbers handed
// to prom-client at scrape time, not a label hash per call.
import type { Redis } from "ioredis";
import { Counter, Gauge, type Registry } from "prom-client";
import { errorCounter } from "../shared/ops.ts";
import { family, TallyHistogram } from "../shared/tally.ts";

const BATCH_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000];

export function taskMetrics(registry: Registry) {
  const registers = [registry];
  return {
    eventsPushed: family(registers, "bunchat_task_events_pushed_total", "Stream events handled by the push group, by type (m message, p presence, k kick, rd read position, ty typing)", "type"),
    deliveries: family(
      registers,
      "bunchat_task_push_deliveries_total",
      "Event deliveries to connect instances (one per event and instance), by result: ok, skipped (instance gone), failed (gave up on an application error)",
      "result",
    ),
    pushCalls: new Counter({
      name: "bunchat_task_push_rpc_total",
      help: "ConnectRPC push calls, by result",
      labelNames: ["result"] as const,
      registers,
    }),
    rowsPersisted: new Counter({
      name: "bunchat_task_rows_persisted_total",
      help: "Message rows inserted into MySQL (replays that were already stored are not counted)",
      registers,
    }),
    pushBatch: new TallyHistogram("bunchat_task_push_batch_size", "Entries per push batch", BATCH_BUCKETS, registers),
    persistBatch: new TallyHistogram("bunchat_task_persist_batch_size", "Entries per persist batch", BATCH_BUCKETS, registers),
    lag: new TallyHistogram(
      "bunchat_task_push_lag_seconds",
      "End-to-end lag from message acceptance (msg.ts) to delivery to connect instances",
      [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    ),
    batchFailures: new Counter({
      name: "bunchat_task_batch_failures_total",
      help: "Batches left pending for a retry, by group",
      labelNames: ["group"] as const,
      registers,
    }),
    seqCollisions: new Counter({
      name: "bunchat_task_seq_collisions_total",
      help: "Messages whose (conv, seq) MySQL already held with another id (Redis lost its tail); each was given a new seq and delivered again",
      registers,
    }),
    ownedPartitions: new Gauge({ name: "bunchat_task_owned_partitions", help: "Stream partitions this worker owns", registers }),
    partitions: new Gauge({ name: "bunchat_task_partitions", help: "Stream partitions of the deployment (IM_STREAM_PARTITIONS); the sum of owned ones should equal it", registers }),
    persistDelay: new TallyHistogram(
      "bunchat_persist_delay_seconds",
      "Delay from message acceptance (msg.ts) to its MySQL commit by the persist group",
      [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers,
    ),
    errors: errorCounter(registry, "task"),
  };
}

export type TaskMetrics = ReturnType<typeof taskMetrics>;

/** Where the stream gauges read from: the partitions this worker owns now, and a Redis connection. */
export interface StreamSource {
  partitions(): Iterable<number>;
  redis(): Redis | undefined;
  stream(p: number): string;
}

interface GroupInfo {
  group: string;
  lag?: number;
  pending: number;
}

/** One XLEN and XINFO GROUPS per owned partition, shared by the three gauges of one scrape. */
async function snapshot(src: StreamSource): Promise<Map<number, { length: number; groups: GroupInfo[] }>> {
  const out = new Map<number, { length: number; groups: GroupInfo[] }>();
  const redis = src.redis();
  if (!redis) return out;
  const parts = [...src.partitions()];
  if (!parts.length) return out;
  const pipe = redis.pipeline();
  for (const p of parts) pipe.xlen(src.stream(p)).xinfo("GROUPS", src.stream(p));
  const res = (await pipe.exec()) ?? [];
  parts.forEach((p, i) => {
    const [lenErr, len] = res[2 * i] ?? [];
    const [infoErr, info] = res[2 * i + 1] ?? [];
    if (lenErr || infoErr) return; // stream not created yet, or Redis failing: no sample this scrape
    const groups = (info as unknown[][]).map((flat) => {
      const f: Record<string, unknown> = {};
      for (let j = 0; j + 1 < flat.length; j += 2) f[String(flat[j])] = flat[j + 1];
      // lag is nil when Redis cannot compute it (entries deleted out of order): then no sample.
      return { group: String(f.name), pending: Number(f.pending ?? 0), lag: f.lag === null || f.lag === undefined ? undefined : Number(f.lag) };
    });
    out.set(p, { length: Number(len), groups });
  });
  return out;
}

/**
 * bunchat_stream_length{partition}, bunchat_task_group_lag{group,partition} (entries not yet
 * delivered to the group) and bunchat_task_group_pending{group,partition} (delivered, not yet
 * acked), read from Redis at scrape time for the partitions this worker owns; each partition is
 * owned by one worker, so summing over instances never counts one twice.
 */
export function streamGauges(registry: Registry, src: StreamSource): void {
  let shared: Promise<Map<number, { length: number; groups: GroupInfo[] }>> | undefined;
  // The three collect() calls of one scrape share one round trip.
  const read = () => {
    shared ??= snapshot(src).finally(() => setTimeout(() => (shared = undefined), 100));
    return shared;
  };
  const registers = [registry];
  new Gauge({
    name: "bunchat_stream_length",
    help: "Entries in a partition's Redis stream (not yet trimmed: unacked by a group, or recent)",
    labelNames: ["partition"],
    registers,
    async collect() {
      const snap = await read().catch(() => new Map());
      this.reset();
      for (const [p, s] of snap) this.set({ partition: String(p) }, s.length);
    },
  });
  new Gauge({
    name: "bunchat_task_group_lag",
    help: "Stream entries not yet read by a consumer group (XINFO GROUPS lag)",
    labelNames: ["group", "partition"],
    registers,
    async collect() {
      const snap = await read().catch(() => new Map());
      this.reset();
      for (const [p, s] of snap) for (const g of s.groups as GroupInfo[]) if (g.lag !== undefined) this.set({ group: g.group, partition: String(p) }, g.lag);
    },
  });
  new Gauge({
    name: "bunchat_task_group_pending",
    help: "Stream entries read by a consumer group but not yet acked (XINFO GROUPS pending)",
    labelNames: ["group", "partition"],
    registers,
    async collect() {
      const snap = await read().catch(() => new Map());
      this.reset();
      for (const [p, s] of snap) for (const g of s.groups as GroupInfo[]) this.set({ group: g.group, partition: String(p) }, g.pending);
    },
  });
}
