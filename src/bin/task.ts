// Wiring only: config, logger, db, discovery, the task worker, its ops port, signals.
// No migration here: logic applies them, and the persist group retries until the table exists.
import { DEFAULT_BASE_PORT, PORT_OFFSETS } from "../shared/config.ts";
import { openDb } from "../shared/db/index.ts";
import { Discovery } from "../shared/discovery.ts";
import { newInstanceId } from "../shared/instance.ts";
import { serveOps } from "../shared/ops.ts";
import { TaskWorker } from "../task/worker.ts";
import { runRole } from "./run.ts";
import { clusterAuthFor } from "../shared/cluster-auth.ts";

await runRole("task", async ({ config, log }) => {
  clusterAuthFor(config, { redis: true, mysql: true }); // refuses to start open off loopback, before anything else
  const db = openDb(config.mysqlUrl);
  const discovery = new Discovery({ endpoints: config.etcdEndpoints, prefix: config.etcdPrefix, leaseTtlSec: config.leaseTtlSec, log });
  const worker = new TaskWorker({ config, log, redis: config.redisUrl, db: db.db, discovery, instanceId: newInstanceId("task") });
  // IM_METRICS_PORT defaults to logic's metrics port; unset, task takes its own slot so both run side by side.
  const port = process.env.IM_METRICS_PORT
    ? config.metricsPort
    : Number(process.env.IM_BASE_PORT ?? DEFAULT_BASE_PORT) + PORT_OFFSETS.taskMetrics;
  const ops = serveOps(port, worker.registry, () => worker.ready);
  await worker.start();
  log.info("task ready", { metricsPort: ops.port });
  return async () => {
    await worker.stop();
    await ops.stop(true);
    await db.close();
    await discovery.close();
  };
});
