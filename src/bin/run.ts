// Shared process wiring for every role: config (problems are fatal, unknown IM_* warned about),
// the advertised and internal addresses (IM_HOST=auto, or unset in a container: the interface
// that reaches etcd), the role's default ops port, JSON logger, and graceful shutdown on SIGTERM/SIGINT.
import { AUTO_HOST, DEFAULT_BASE_PORT, METRICS_OFFSETS, loadConfig, type Config } from "../shared/config.ts";
import { inContainer, resolveHosts } from "../shared/host.ts";
import { createLogger, type Logger } from "../shared/log.ts";

export type RoleName = keyof typeof METRICS_OFFSETS;

export async function runRole(role: RoleName, start: (ctx: { config: Readonly<Config>; log: Logger }) => Promise<() => Promise<void>>) {
  const env = process.env;
  let loaded;
  let hosts;
  try {
    const overrides: Partial<Config> = {};
    // Each role has its own default ops port, so one of each runs side by side on one machine.
    if (!env.IM_METRICS_PORT) overrides.metricsPort = Number(env.IM_BASE_PORT ?? DEFAULT_BASE_PORT) + METRICS_OFFSETS[role];
    loaded = loadConfig(inContainer(env) && !env.IM_HOST ? { ...env, IM_HOST: AUTO_HOST } : env, overrides);
    hosts = await resolveHosts(loaded.config);
  } catch (e) {
    process.stderr.write(`${role}: ${(e as Error).message}\n`);
    process.exit(2);
  }
  const { warnings } = loaded;
  const config: Readonly<Config> = Object.freeze({ ...loaded.config, host: hosts.host, metricsHost: hosts.metricsHost });
  const log = createLogger({ level: config.logLevel, base: { role } });
  for (const w of [...warnings, ...hosts.warnings]) log.warn(w);
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
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));
  try {
    stop = await start({ config, log });
  } catch (e) {
    log.error("start failed", { err: e });
    process.exit(1);
  }
}
