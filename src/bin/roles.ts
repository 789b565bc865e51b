// How each role is wired (config, logger, stores, discovery, its server) and stopped: used by
// src/bin/<role>.ts for one role per process and by src/bin/node.ts for several in one process.
// `local` carries the co-located instances of other roles, called in-process instead of over gRPC.
import type { Config } from "../shared/config.ts";
import type { Logger } from "../shared/log.ts";
import { openDb } from "../shared/db/index.ts";
import { migrate } from "../shared/db/migrate.ts";
import { Discovery } from "../shared/discovery.ts";
import { newInstanceId } from "../shared/instance.ts";
import { etcdTarget } from "../shared/resolver.ts";
import { localClient, makeClient } from "../shared/rpc.ts";
import { clusterAuthFor } from "../shared/cluster-auth.ts";
import { serveOps } from "../shared/ops.ts";
import { LogicServer } from "../logic/server.ts";
import { TaskWorker } from "../task/worker.ts";
import { ConnectServer } from "../connect/server.ts";
import { ApiServer } from "../api/server.ts";
import { LOGIC_SERVICE, LogicService, type LogicApi } from "../../proto/logic.ts";
import type { ConnectApi } from "../../proto/connect.ts";

export interface RoleContext {
  config: Readonly<Config>;
  log: Logger;
}

/** In-process implementations of co-located roles: at most one logic; connects by instance id. */
export interface Colocated {
  logic?: LogicApi;
  connects: Map<string, ConnectApi>;
}

export type Stop = () => Promise<void>;

const discoveryFor = ({ config, log }: RoleContext) =>
  new Discovery({ endpoints: config.etcdEndpoints, prefix: config.etcdPrefix, leaseTtlSec: config.leaseTtlSec, log });

export async function startLogic(ctx: RoleContext, local?: Colocated): Promise<Stop> {
  const { config, log } = ctx;
  clusterAuthFor(config, { redis: true, mysql: true }); // refuses to start open off loopback, before anything else
  await migrate(config.mysqlUrl);
  const db = openDb(config.mysqlUrl);
  const discovery = discoveryFor(ctx);
  const server = new LogicServer({ config, log, db, discovery, instanceId: newInstanceId("logic") });
  await server.start();
  if (local) local.logic = server.api();
  return async () => {
    if (local) local.logic = undefined;
    await server.stop();
    await db.close();
    await discovery.close();
  };
}

// No migration here: logic applies them, and the persist group retries until the table exists.
export async function startTask(ctx: RoleContext, local?: Colocated): Promise<Stop> {
  const { config, log } = ctx;
  clusterAuthFor(config, { redis: true, mysql: true });
  const db = openDb(config.mysqlUrl);
  const discovery = discoveryFor(ctx);
  const worker = new TaskWorker({
    config,
    log,
    redis: config.redisUrl,
    db: db.db,
    discovery,
    instanceId: newInstanceId("task"),
    localConnects: local?.connects,
  });
  const ops = serveOps(config.metricsHost, config.metricsPort, { registry: worker.registry, live: () => worker.ready, checks: worker.readyChecks() });
  await worker.start();
  log.info("task ready", { metricsPort: ops.port });
  return async () => {
    await worker.stop();
    await ops.stop(true);
    await db.close();
    await discovery.close();
  };
}

export async function startConnect(ctx: RoleContext, local?: Colocated): Promise<Stop> {
  const { config, log } = ctx;
  const auth = clusterAuthFor(config);
  const discovery = discoveryFor(ctx);
  let release = () => {};
  let logic;
  if (local?.logic) logic = localClient<LogicApi>(LogicService, local.logic, log);
  else {
    const target = etcdTarget(discovery, LOGIC_SERVICE);
    release = target.release;
    logic = makeClient<LogicApi>(LogicService, target.target, undefined, auth);
  }
  const instanceId = newInstanceId("connect");
  const server = new ConnectServer({ config, log, logic, discovery, instanceId });
  // Known before it registers, so a co-located task never pushes to it over gRPC.
  local?.connects.set(instanceId, server.api());
  await server.start();
  return async () => {
    await server.stop();
    local?.connects.delete(instanceId);
    logic.close();
    release();
    await discovery.close();
  };
}

export async function startApi(ctx: RoleContext, local?: Colocated): Promise<Stop> {
  const { config, log } = ctx;
  clusterAuthFor(config);
  const discovery = discoveryFor(ctx);
  const server = new ApiServer({ config, log, discovery, instanceId: newInstanceId("api"), localLogic: local?.logic });
  await server.start();
  return async () => {
    await server.stop();
    await discovery.close();
  };
}

export const ROLE_STARTS = { logic: startLogic, task: startTask, connect: startConnect, api: startApi } as const;
