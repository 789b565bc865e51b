// Wiring only: config, logger, clients, the logic server, signals.
import { openDb } from "../shared/db/index.ts";
import { migrate } from "../shared/db/migrate.ts";
import { Discovery } from "../shared/discovery.ts";
import { newInstanceId } from "../shared/instance.ts";
import { LogicServer } from "../logic/server.ts";
import { runRole } from "./run.ts";
import { clusterAuthFor } from "../shared/cluster-auth.ts";

await runRole("logic", async ({ config, log }) => {
  clusterAuthFor(config, { redis: true, mysql: true }); // refuses to start open off loopback, before anything else
  await migrate(config.mysqlUrl);
  const db = openDb(config.mysqlUrl);
  const discovery = new Discovery({ endpoints: config.etcdEndpoints, prefix: config.etcdPrefix, leaseTtlSec: config.leaseTtlSec, log });
  const server = new LogicServer({ config, log, db, discovery, instanceId: newInstanceId("logic") });
  await server.start();
  return async () => {
    await server.stop();
    await db.close();
    await discovery.close();
  };
});
