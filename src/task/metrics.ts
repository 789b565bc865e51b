// Prometheus metrics of one task worker, on its own registry (several workers may share a process).
import { Counter, Gauge, Histogram, type Registry } from "prom-client";

const BATCH_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000];

export function taskMetrics(registry: Registry) {
  const registers = [registry];
  return {
    eventsPushed: new Counter({
      name: "bunchat_task_events_pushed_total",
      help: "Stream events handled by the push group, by type (m message, p presence, k kick, rd read position, ty typing)",
      labelNames: ["type"] as const,
      registers,
    }),
    deliveries: new Counter({
      name: "bunchat_task_push_deliveries_total",
      help: "Event deliveries to connect instances (one per event and instance), by result: ok, skipped (instance gone), failed (gave up on an application error)",
      labelNames: ["result"] as const,
      registers,
    }),
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
    pushBatch: new Histogram({ name: "bunchat_task_push_batch_size", help: "Entries per push batch", buckets: BATCH_BUCKETS, registers }),
    persistBatch: new Histogram({ name: "bunchat_task_persist_batch_size", help: "Entries per persist batch", buckets: BATCH_BUCKETS, registers }),
    lag: new Histogram({
      name: "bunchat_task_push_lag_seconds",
      help: "End-to-end lag from message acceptance (msg.ts) to delivery to connect instances",
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    }),
    batchFailures: new Counter({
      name: "bunchat_task_batch_failures_total",
      help: "Batches left pending for a retry, by group",
      labelNames: ["group"] as const,
      registers,
    }),
    ownedPartitions: new Gauge({ name: "bunchat_task_owned_partitions", help: "Stream partitions this worker owns", registers }),
  };
}

export type TaskMetrics = ReturnType<typeof taskMetrics>;
