// Shared process wiring for every role: config (problems are fatal, unknown IM_* warned about),
// the advertised and internal addresses (IM_HOST=auto, or unset in a container: the interface
// that reaches etcd), the role's default ops port, JSON logger, and graceful shutdown on SIGTERM/SIGINT.
import { AUTO_HOST, ConfigError, DEFAULT_BASE_PORT, METRICS_OFFSETS, loadConfig, type Config } from "../shared/config.ts";
import { inContainer, resolveHosts } from "../shared/host.ts";
import { createLogger, type Logger } from "../shared/log.ts";

export type RoleName = keyof typeof METRICS_OFFSETS;

export async function runRole(role: RoleName, start: (ctx: { config: Readonly<Config>; log: Logger }) => Promise<() => Promise<void>>) {
  await runProcess(role, [role], 0, async (configs, log) => start({ config: configs[role]!, log }));
}

/** The environment a role reads: in a container with IM_HOST unset, IM_HOST=auto. */
export const roleEnv = (env: NodeJS.ProcessEnv) => (inContainer(env) && !env.IM_HOST ? { ...env, IM_HOST: AUTO_HOST } : env);

/**
 * The ops port of `role` when its process hosts `roleCount` roles as node `index`: each role has
 * its own default (IM_BASE_PORT + its offset + index), so one of each runs side by side on one
 * machine; undefined where IM_METRICS_PORT decides (a process with one role that sets it).
 */
export function opsPort(env: NodeJS.ProcessEnv, role: RoleName, index: number, roleCount: number): number | undefined {
  if (env.IM_METRICS_PORT && roleCount === 1) return undefined;
  return Number(env.IM_BASE_PORT ?? DEFAULT_BASE_PORT) + (METRICS_OFFSETS[role] ?? 0) + index;
}

/**
 * One process hosting `roles` (src/bin/node.ts; runRole: one). Each role gets the same config
 * except its ops port: IM_METRICS_PORT for a single role, else IM_BASE_PORT + the role's offset
 * + `index` (the layout of `bun run cluster`, so node i's roles use instance i's ports).
 */
export async function runProcess(
  name: string,
  roles: RoleName[],
  index: number,
  start: (configs: Partial<Record<RoleName, Readonly<Config>>>, log: Logger) => Promise<() => Promise<void>>,
) {
  const env = process.env;
  const configs: Partial<Record<RoleName, Readonly<Config>>> = {};
  const warnings: string[] = [];
  try {
    // Read and resolved once: the roles' configs differ only in their ops port.
    const loaded = loadConfig(roleEnv(env));
    const hosts = await resolveHosts(loaded.config);
    warnings.push(...loaded.warnings, ...hosts.warnings);
    for (const role of roles) {
      const metricsPort = opsPort(env, role, index, roles.length) ?? loaded.config.metricsPort;
      configs[role] = Object.freeze({ ...loaded.config, host: hosts.host, metricsHost: hosts.metricsHost, metricsPort });
    }
  } catch (e) {
    process.stderr.write(`${name}: ${(e as Error).message}\n`);
    process.exit(2);
  }
  const config = configs[roles[0]]!;
  const log = createLogger({ level: config.logLevel, base: roles.length > 1 ? { roles: roles.join(",") } : { role: roles[0] } });
  for (const w of warnings) log.warn(w);
  let stop: (() => Promise<void>) | undefined;
  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info("shutting down", { signal });
    const force = setTimeout(() => process.exit(1), 15_000);
    try {
      await stop?.();
    } catch (e) {
      log.error("shutdown failed", { err: e });
    }
    clearTimeout(force);
    process.exit(0);
  };
  // Last resort: every promise in the tiers is handled at its source; one that is not is a bug,
  // logged here rather than ending the process (Bun exits on an unhandled rejection), since the
  // rejection may have been caused by a client's input.
  process.on("unhandledRejection", (err) => log.error("unhandled promise rejection (a bug)", { err }));
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));
  try {
    stop = await start(configs, log);
  } catch (e) {
    // A configuration problem found at start (e.g. IM_CLUSTER_SECRET missing) names its variable.
    if (e instanceof ConfigError) process.stderr.write(`${name}: ${e.message}\n`);
    log.error("start failed", { err: e });
    process.exit(1);
  }
}
