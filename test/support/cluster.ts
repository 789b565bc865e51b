// Builds a bunchat cluster inside the test process on port 0: several instances of each tier
// against the shared real infrastructure, isolated by a unique Redis and etcd prefix.
import { loadConfig, type Config } from "../../src/shared/config.ts";
import { createLogger, type Logger } from "../../src/shared/log.ts";
import { Discovery } from "../../src/shared/discovery.ts";
import { openDb, type DbHandle } from "../../src/shared/db/index.ts";
import { newInstanceId } from "../../src/shared/instance.ts";
import { LogicServer } from "../../src/logic/server.ts";
import { ApiServer } from "../../src/api/server.ts";
import { ConnectServer } from "../../src/connect/server.ts";
import { TaskWorker } from "../../src/task/worker.ts";
import { etcdTarget } from "../../src/shared/resolver.ts";
import { makeClient } from "../../src/shared/rpc.ts";
import { ClusterAuth } from "../../src/shared/cluster-auth.ts";
import { LogicService, LOGIC_SERVICE, type LogicApi } from "../../proto/logic.ts";
import { getInfra } from "./infra.ts";

export interface Stoppable {
  stop(): Promise<void>;
}

export interface TestCluster {
  config: Readonly<Config>;
  log: Logger;
  db: DbHandle;
  logic: LogicServer[];
  api: ApiServer[];
  connect: ConnectServer[];
  task: TaskWorker[];
  /** ws URL of connect instance i, with the token (and format) filled in. */
  wsUrl: (i: number, token: string, format?: "msgpack") => string;
  apiUrl: (i?: number) => string;
  discovery: () => Discovery;
  /** Stops one member and removes it from the cleanup list. */
  stopMember: (m: Stoppable) => Promise<void>;
  track: (m: Stoppable) => void;
  stop(): Promise<void>;
}

let clusterNo = 0;

export async function testConfig(overrides: Partial<Config> = {}): Promise<Readonly<Config>> {
  const infra = await getInfra();
  const id = `t${process.pid}x${++clusterNo}x${Math.random().toString(36).slice(2, 7)}`;
  const { config } = loadConfig(
    {
      IM_REDIS_URL: infra.redisUrl,
      IM_MYSQL_URL: infra.mysqlUrl,
      IM_ETCD_ENDPOINTS: infra.etcdEndpoints.join(","),
      IM_ETCD_PREFIX: `/${id}`,
      IM_REDIS_PREFIX: `${id}:`,
      IM_API_PORT: "0",
      IM_LOGIC_PORT: "0",
      IM_CONNECT_PORT: "0",
      IM_CONNECT_RPC_PORT: "0",
      IM_METRICS_PORT: "0",
      IM_LEASE_TTL: "2",
      IM_LOG_LEVEL: (process.env.TEST_LOG_LEVEL as string) ?? "error",
      // Every test cluster authenticates its internal calls, as a deployment does.
      IM_CLUSTER_SECRET: Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64url"),
      // The shared test machine is saturated by other suites: a niced hash there can take longer
      // than a test's patience; hashing priority has its own test (src/logic/hash-pool.test.ts).
      IM_HASH_NICE: "0",
    },
    overrides,
  );
  return config;
}

export async function startCluster(
  opts: { logic?: number; api?: number; connect?: number; task?: number; config?: Partial<Config> } = {},
): Promise<TestCluster> {
  const config = await testConfig(opts.config);
  const log = createLogger({ level: config.logLevel });
  const db = openDb(config.mysqlUrl);
  const members: Stoppable[] = [];
  const discoveries: Discovery[] = [];
  const discovery = () => {
    const d = new Discovery({ endpoints: config.etcdEndpoints, prefix: config.etcdPrefix, leaseTtlSec: config.leaseTtlSec, log });
    discoveries.push(d);
    return d;
  };
  const logic: LogicServer[] = [];
  const api: ApiServer[] = [];
  for (let i = 0; i < (opts.logic ?? 1); i++) {
    const s = new LogicServer({ config, log: log.child({ role: "logic", i }), db, discovery: discovery(), instanceId: newInstanceId("logic") });
    await s.start();
    logic.push(s);
    members.push(s);
  }
  for (let i = 0; i < (opts.api ?? 1); i++) {
    const s = new ApiServer({ config, log: log.child({ role: "api", i }), discovery: discovery(), instanceId: newInstanceId("api") });
    await s.start();
    api.push(s);
    members.push(s);
  }
  const connect: ConnectServer[] = [];
  for (let i = 0; i < (opts.connect ?? 0); i++) {
    const d = discovery();
    const t = etcdTarget(d, LOGIC_SERVICE);
    const client = makeClient<LogicApi>(LogicService, t.target, undefined, new ClusterAuth(config.clusterSecrets));
    const s = new ConnectServer({ config, log: log.child({ role: "connect", i }), logic: client, discovery: d, instanceId: newInstanceId("connect") });
    await s.start();
    connect.push(s);
    members.push({
      stop: async () => {
        await s.stop();
        client.close();
        t.release();
      },
    });
  }
  const task: TaskWorker[] = [];
  for (let i = 0; i < (opts.task ?? 0); i++) {
    const w = new TaskWorker({ config, log: log.child({ role: "task", i }), redis: config.redisUrl, db: db.db, discovery: discovery(), instanceId: newInstanceId("task") });
    await w.start();
    task.push(w);
    members.push(w);
  }
  return {
    config,
    log,
    db,
    logic,
    api,
    connect,
    task,
    wsUrl: (i, token, format) => `ws://127.0.0.1:${connect[i].port}/ws?token=${encodeURIComponent(token)}${format ? `&format=${format}` : ""}`,
    apiUrl: (i = 0) => `http://127.0.0.1:${api[i].port}`,
    discovery,
    track: (m) => members.push(m),
    stopMember: async (m) => {
      const i = members.indexOf(m);
      if (i >= 0) members.splice(i, 1);
      await m.stop();
    },
    stop: async () => {
      for (const m of members.reverse()) await m.stop().catch(() => undefined);
      for (const d of discoveries) await d.close();
      await db.close();
    },
  };
}
