// `bun run cluster`: local infrastructure plus every role, supervised. Prints one "ready" JSON
// line on stdout once all answer /healthz; everything else goes to stderr. SIGINT/SIGTERM, or the
// death of the parent process (npm does not forward signals), stop roles, then infrastructure,
// then exit 0.
import { parseClusterArgs, UsageError } from "../cluster/args.ts";
import { readyLine } from "../cluster/plan.ts";
import { watchParent } from "../cluster/parent.ts";
import { startCluster, type Cluster } from "../cluster/run.ts";
import { createLogger, type Level } from "../shared/log.ts";

const LEVELS = ["debug", "info", "warn", "error"];
const level = (LEVELS.includes(process.env.IM_LOG_LEVEL ?? "") ? process.env.IM_LOG_LEVEL : "info") as Level;
const log = createLogger({ level, base: { role: "cluster" } });

let args;
try {
  args = parseClusterArgs(Bun.argv.slice(2), process.env);
} catch (err) {
  if (!(err instanceof UsageError)) throw err;
  process.stderr.write(err.message + "\n");
  process.exit(err.help ? 0 : 2);
}

const abort = new AbortController();
let cluster: Cluster | undefined;
let stopRequested = false;

async function shutdown(signal: string): Promise<void> {
  if (stopRequested) {
    log.warn("already stopping: waiting for processes to exit", { signal });
    return;
  }
  stopRequested = true;
  log.info("stopping", { signal });
  abort.abort();
  if (!cluster) return; // start in progress: it sees the abort, cleans up, and exits below
  await cluster.stop();
  log.info("stopped");
  process.exit(0);
}
process.on("SIGINT", () => void shutdown("SIGINT"));
process.on("SIGTERM", () => void shutdown("SIGTERM"));
watchParent((was, now) => {
  log.warn("parent process gone: stopping as on SIGTERM", { parentPid: was, ppid: now });
  void shutdown("parent exit");
});

try {
  cluster = await startCluster({ ...args, log, env: process.env, signal: abort.signal });
} catch (err) {
  if (stopRequested) {
    log.info("stopped");
    process.exit(0);
  }
  log.error("cluster failed to start", { err });
  process.stderr.write(`\ncluster: ${(err as Error).message}\n`);
  process.exit(1);
}
if (stopRequested) {
  await cluster.stop();
  process.exit(0);
}

process.stdout.write(readyLine(cluster.instances) + "\n");
const api = cluster.instances.find((i) => i.role === "api")?.publicUrl;
process.stderr.write(
  `\nbunchat is ready${api ? `: open ${api} in a browser` : ""}.` +
    ` Infrastructure logs are in ${cluster.infra.dataDir}/{redis,mysql,etcd}.log. Ctrl-C stops everything.\n\n`,
);
