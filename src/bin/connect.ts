// Wiring only: config, logger, discovery, the LogicRPC client, the connect server, signals.
import { ConnectServer } from "../connect/server.ts";
import { Discovery } from "../shared/discovery.ts";
import { newInstanceId } from "../shared/instance.ts";
import { etcdTarget } from "../shared/resolver.ts";
import { makeClient } from "../shared/rpc.ts";
import { clusterAuthFor } from "../shared/cluster-auth.ts";
import { LOGIC_SERVICE, LogicService, type LogicApi } from "../../proto/logic.ts";
import { runRole } from "./run.ts";

await runRole("connect", async ({ config, log }) => {
  const auth = clusterAuthFor(config); // refuses to start open off loopback, before anything else
  const discovery = new Discovery({ endpoints: config.etcdEndpoints, prefix: config.etcdPrefix, leaseTtlSec: config.leaseTtlSec, log });
  const logicTarget = etcdTarget(discovery, LOGIC_SERVICE);
  const logic = makeClient<LogicApi>(LogicService, logicTarget.target, undefined, auth);
  const server = new ConnectServer({ config, log, logic, discovery, instanceId: newInstanceId("connect") });
  await server.start();
  return async () => {
    await server.stop();
    logic.close();
    logicTarget.release();
    await discovery.close();
  };
});
