// The local cluster: infrastructure first, then every role instance as its own OS process
// (`bun src/bin/<role>.ts`; co-located roles: one `bun src/bin/node.ts` per instance index),
// supervised, until stop(): roles first, then infrastructure.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { OrphanGuard } from "../infra/guard.ts";
import { isPortFree, startInfra, type Infra } from "../infra/index.ts";
import type { Logger } from "../shared/log.ts";
import type { ClusterArgs, Role } from "./args.ts";
import { waitAllHealthy } from "./health.ts";
import { allPorts, infraPorts, planInstances, type Instance } from "./plan.ts";
import { Supervised } from "./supervisor.ts";

const REPO_ROOT = resolve(import.meta.dir, "../..");
const READY_TIMEOUT_MS = 60_000;
const ROLE_STOP_TIMEOUT_MS = 10_000;

export interface ClusterOptions extends ClusterArgs {
  log: Logger;
  /** The environment roles inherit (PATH, IM_* not set by the cluster, ...). */
  env: Record<string, string | undefined>;
  /** Where role output lines go; default: stderr, prefixed with the instance name. */
  onLine?: (instance: Instance, line: string) => void;
  /** Command line of a role process; default `bun src/bin/<role>.ts`. */
  roleCommand?: (role: Role) => string[];
  /** Aborting stops a start in progress; startCluster then rejects after cleaning up. */
  signal?: AbortSignal;
}

export interface Cluster {
  infra: Infra;
  instances: Instance[];
  /** Roles first (SIGTERM, SIGKILL after 10 s), then the infrastructure. Safe to call twice. */
  stop(): Promise<void>;
}

const defaultCommand = (role: Role) => [process.execPath, join(REPO_ROOT, "src/bin", `${role}.ts`)];
const nodeCommand = (roles: Role[], index: number) => [process.execPath, join(REPO_ROOT, "src/bin/node.ts"), "--roles", roles.join(","), "--index", String(index)];
const toStderr = (instance: Instance, line: string) => process.stderr.write(`${instance.name} | ${line}\n`);

export async function startCluster(opts: ClusterOptions): Promise<Cluster> {
  const log = opts.log;
  const dataDir = resolve(opts.dataDir);
  const instances = planInstances(opts.counts, opts.basePort);
  await checkPortsFree(allPorts(instances, infraPorts(opts.basePort)));

  // Redis, MariaDB and etcd are restarted on their own data when they die, like the roles.
  // IM_ACK_MODE=fsync runs Redis with appendfsync always, the other modes with everysec.
  const infra = await startInfra({
    dataDir,
    ports: infraPorts(opts.basePort),
    log,
    signal: opts.signal,
    keepAlive: true,
    redisAppendfsync: opts.env.IM_ACK_MODE === "fsync" ? "always" : "everysec",
  });
  const guard = new OrphanGuard(join(dataDir, "role-pids"));
  const shared = {
    IM_REDIS_URL: infra.redisUrl,
    IM_MYSQL_URL: infra.mysqlUrl,
    IM_ETCD_ENDPOINTS: infra.etcdEndpoints.join(","),
    IM_HOST: "127.0.0.1",
    IM_BASE_PORT: String(opts.basePort),
    IM_CLUSTER_SECRET: clusterSecret(dataDir, opts.env),
    // Nothing of a local cluster listens beyond loopback unless the caller says so.
    IM_PUBLIC_BIND: opts.env.IM_PUBLIC_BIND ?? "127.0.0.1",
  };
  const onLine = opts.onLine ?? toStderr;
  const command = opts.roleCommand ?? defaultCommand;
  // One process per role instance, except the co-located roles (--colocate, --colocate-roles): one
  // process per index i hosting instance i of each (src/bin/node.ts). Health is still checked per
  // instance, on its own ops port.
  const together = new Set(opts.colocate);
  const groups = [
    ...Map.groupBy(instances.filter((i) => together.has(i.role)), (i) => i.index).values(),
    ...instances.filter((i) => !together.has(i.role)).map((i) => [i]),
  ];
  const members = groups.flatMap((group) => {
    const first = group[0];
    const roles = group.map((i) => i.role);
    const env: Record<string, string | undefined> = { ...opts.env, ...shared };
    for (const i of group) Object.assign(env, i.env);
    // A node derives each role's ops port from IM_BASE_PORT and its index (the same layout).
    const node = together.has(first.role);
    if (node) delete env.IM_METRICS_PORT;
    const proc = new Supervised({
      cmd: node ? nodeCommand(roles, first.index) : command(first.role),
      env,
      cwd: REPO_ROOT,
      log: log.child(node ? { role: "node", roles: roles.join(","), index: first.index } : { role: first.role, index: first.index }),
      onLine: (line) => onLine(node ? { ...first, name: `node-${first.index}` } : first, line),
      guard,
    });
    return group.map((instance) => ({ instance, proc }));
  });
  const procs = [...new Set(members.map((m) => m.proc))];

  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= (async () => {
      log.info("stopping roles");
      await Promise.all(procs.map((p) => p.stop(ROLE_STOP_TIMEOUT_MS)));
      guard.close();
      log.info("stopping infrastructure");
      await infra.stop();
    })());

  for (const p of procs) p.start();
  try {
    await waitAllHealthy(members, { timeoutMs: READY_TIMEOUT_MS, signal: opts.signal });
  } catch (err) {
    await stop();
    throw err;
  }
  return { infra, instances, stop };
}

/**
 * The secret every role sends and checks on internal calls: IM_CLUSTER_SECRET from the environment
 * if set, else the one kept in <dataDir>/cluster-secret (mode 0600), made of 32 random bytes the
 * first time, so a cluster restarted on the same data keeps its secret.
 */
function clusterSecret(dataDir: string, env: Record<string, string | undefined>): string {
  if (env.IM_CLUSTER_SECRET) return env.IM_CLUSTER_SECRET;
  const file = join(dataDir, "cluster-secret");
  if (existsSync(file)) return readFileSync(file, "utf8").trim();
  const secret = Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64url");
  writeFileSync(file, secret + "\n", { mode: 0o600 });
  return secret;
}

/** A port already taken would make a health check answer for someone else: refuse to start. */
async function checkPortsFree(ports: Map<number, string>): Promise<void> {
  const busy: string[] = [];
  for (const [port, owner] of ports) if (!(await isPortFree(port))) busy.push(`${port} (${owner})`);
  if (busy.length) {
    throw new Error(
      `ports already in use on 127.0.0.1: ${busy.join(", ")}. Is another cluster running? Stop it, or pass --base-port.`,
    );
  }
}
