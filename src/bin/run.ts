// Shared process wiring for every role: config (problems are fatal, unknown IM_* warned about),
// JSON logger, and graceful shutdown on SIGTERM/SIGINT.
import { ConfigError, loadConfig, type Config } from "../shared/config.ts";
import { createLogger, type Logger } from "../shared/log.ts";

export async function runRole(role: string, start: (ctx: { config: Readonly<Config>; log: Logger }) => Promise<() => Promise<void>>) {
  let loaded;
  try {
    loaded = loadConfig();
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`${role}: ${e.message}\n`);
      process.exit(2);
    }
    throw e;
  }
  const { config, warnings } = loaded;
  const log = createLogger({ level: config.logLevel, base: { role } });
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
    stop = await start({ config, log });
  } catch (e) {
    // A configuration problem found at start (e.g. IM_CLUSTER_SECRET missing) names its variable.
    if (e instanceof ConfigError) process.stderr.write(`${role}: ${e.message}\n`);
    log.error("start failed", { err: e });
    process.exit(1);
  }
}
