// Wiring only: config, logger, db, discovery, the task worker, its ops port, signals.
// No migration here: logic applies them, and the persist group retries until the table exists.
import { openDb } from "../shared/db/index.ts";
import { Discovery } from "../shared/discovery.ts";
import { newInstanceId } from "../shared/instance.ts";
import { serveOps } from "../shared/ops.ts";
import { TaskWorker } from "../task/worker.ts";
import { runRole } from "./run.ts";

await runRole("task", async ({ config, log }) => {
  const db = openDb(config.mysqlUrl);
  const discovery = new Discovery({ endpoints: config.etcdEndpoints, prefix: config.etcdPrefix, leaseTtlSec: config.leaseTtlSec, log });
  const worker = new TaskWorker({ config, log, redis: config.redisUrl, db: db.db, discovery, instanceId: newInstanceId("task") });
  const ops = serveOps(config.metricsHost, config.metricsPort, { registry: worker.registry, live: () => worker.ready, checks: worker.readyChecks() });
  await worker.start();
  log.info("task ready", { metricsPort: ops.port });
  return async () => {
    await worker.stop();
    await ops.stop(true);
    await db.close();
    await discovery.close();
  };
});
