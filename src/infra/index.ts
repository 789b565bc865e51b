// Local infrastructure for development and tests: redis-server, mariadbd and etcd as child
// processes of this one, each with its own port and data folder under dataDir. Only the
// processes started here are ever stopped (by PID).
import { mkdir, rm } from "node:fs/promises";
import { join, resolve } from "node:path";
import { migrate } from "../shared/db/migrate.ts";
import type { Logger } from "../shared/log.ts";
import { etcdSpec } from "./etcd.ts";
import { OrphanGuard } from "./guard.ts";
import { mysqlSpec } from "./mysql.ts";
import { freePort } from "./ports.ts";
import { redisSpec } from "./redis.ts";
import { createService, type Service, type ServiceSpec } from "./service.ts";

export type { Service } from "./service.ts";
export { freePort, freePortRange, isPortFree } from "./ports.ts";

export interface InfraPorts {
  redis: number;
  mysql: number;
  etcd: number;
  etcdPeer: number;
}

export interface InfraOptions {
  /** Holds redis/, mysql/, etcd/, one <service>.log each and the orphan guard's pids file; created if missing. */
  dataDir: string;
  /** Free ports are picked when absent. */
  ports?: InfraPorts;
  /** Database created and migrated; default "bunchat". */
  database?: string;
  log: Logger;
  /** false: stop() deletes dataDir. Default true. */
  keepData?: boolean;
  /** Aborting stops a start in progress (what was started is stopped again). */
  signal?: AbortSignal;
  /** Restart a server that exits on its own, on its own data (the local cluster). Default false. */
  keepAlive?: boolean;
  /** Redis's appendfsync; default "everysec" ("always" for IM_ACK_MODE=fsync). */
  redisAppendfsync?: "always" | "everysec";
}

export interface Infra {
  redisUrl: string;
  /** mysql://root@127.0.0.1:PORT/<database> */
  mysqlUrl: string;
  etcdEndpoints: string[];
  dataDir: string;
  ports: InfraPorts;
  redis: Service;
  mysql: Service;
  etcd: Service;
  /** Stops all three (and deletes dataDir unless keepData). Safe to call twice. */
  stop(): Promise<void>;
}

export async function startInfra(opts: InfraOptions): Promise<Infra> {
  const dataDir = resolve(opts.dataDir);
  const database = opts.database ?? "bunchat";
  if (!/^[A-Za-z0-9_]+$/.test(database)) throw new Error(`invalid database name: ${database}`);
  const ports = opts.ports ?? { redis: await freePort(), mysql: await freePort(), etcd: await freePort(), etcdPeer: await freePort() };
  const log = opts.log.child({ component: "infra" });
  await mkdir(dataDir, { recursive: true });
  const guard = new OrphanGuard(join(dataDir, "pids"), opts.keepData === false ? dataDir : "");

  const make = (spec: ServiceSpec) =>
    createService(spec, { log, logFile: join(dataDir, `${spec.name}.log`), signal: opts.signal, guard, keepAlive: opts.keepAlive });
  const redis = make(redisSpec({ port: ports.redis, dir: join(dataDir, "redis"), appendfsync: opts.redisAppendfsync }));
  const mysql = make(mysqlSpec({ port: ports.mysql, dir: join(dataDir, "mysql"), socket: join(dataDir, "mysql.sock") }));
  const etcd = make(etcdSpec({ port: ports.etcd, peerPort: ports.etcdPeer, dir: join(dataDir, "etcd") }));
  const all = [redis, mysql, etcd];

  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= (async () => {
      await Promise.all(all.map((s) => s.stop()));
      guard.close();
      if (opts.keepData === false) await rm(dataDir, { recursive: true, force: true });
    })());

  const infra: Infra = {
    redisUrl: `redis://127.0.0.1:${ports.redis}`,
    mysqlUrl: `mysql://root@127.0.0.1:${ports.mysql}/${database}`,
    etcdEndpoints: [`http://127.0.0.1:${ports.etcd}`],
    dataDir,
    ports,
    redis,
    mysql,
    etcd,
    stop,
  };

  try {
    const results = await Promise.allSettled(all.map((s) => s.start()));
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed.length) throw failed.length === 1 ? failed[0].reason : new Error(failed.map((f) => String(f.reason?.message ?? f.reason)).join("\n\n"));
    opts.signal?.throwIfAborted();
    const applied = await migrate(infra.mysqlUrl);
    log.info("infra ready", { dataDir, ports, migrationsApplied: applied.length });
  } catch (err) {
    await stop();
    throw err;
  }
  return infra;
}
