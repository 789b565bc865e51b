// Wiring only: config, logger, discovery, the api server, signals.
import { Discovery } from "../shared/discovery.ts";
import { newInstanceId } from "../shared/instance.ts";
import { ApiServer } from "../api/server.ts";
import { runRole } from "./run.ts";
import { clusterAuthFor } from "../shared/cluster-auth.ts";

await runRole("api", async ({ config, log }) => {
  clusterAuthFor(config); // refuses to start open off loopback, before anything else
  const discovery = new Discovery({ endpoints: config.etcdEndpoints, prefix: config.etcdPrefix, leaseTtlSec: config.leaseTtlSec, log });
  const server = new ApiServer({ config, log, discovery, instanceId: newInstanceId("api") });
  await server.start();
  return async () => {
    await server.stop();
    await discovery.close();
  };
});
