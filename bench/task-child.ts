// One task worker in a process of its own, for bench/task-steady.ts: loads TaskWorker and its
// dependencies from the source tree in TASK_SRC (this repository by default, or an old checkout
// for A/B runs), with the config overrides in TASK_CONFIG (JSON), starts it, prints "ready" and
// stops it cleanly on SIGTERM. Logs are silent.
import { resolve } from "node:path";

const src = resolve(process.env.TASK_SRC ?? `${import.meta.dir}/..`);
const overrides = JSON.parse(process.env.TASK_CONFIG ?? "{}");
const { loadConfig } = await import(`${src}/src/shared/config.ts`);
const { openDb } = await import(`${src}/src/shared/db/index.ts`);
const { Discovery } = await import(`${src}/src/shared/discovery.ts`);
const { silentLogger: log } = await import(`${src}/src/shared/log.ts`);
const { TaskWorker } = await import(`${src}/src/task/worker.ts`);

const config = loadConfig({}, overrides).config;
const db = openDb(config.mysqlUrl);
const discovery = new Discovery({ endpoints: config.etcdEndpoints, prefix: config.etcdPrefix, leaseTtlSec: config.leaseTtlSec, log });
const worker = new TaskWorker({ config, log, redis: config.redisUrl, db: db.db, discovery, instanceId: `task-bench-${process.pid}` });
await worker.start();
console.log("ready");
process.once("SIGTERM", async () => {
  await worker.stop();
  await db.close();
  await discovery.close();
  process.exit(0);
});
