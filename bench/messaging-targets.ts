// The systems bench/messaging.ts drives with the same clients, rooms and frames: a bare Bun
// pub/sub process (the ceiling), bunchat (`bun run cluster`), and Socket.IO on Node with the
// Redis streams adapter (two processes and a redis-server). Each starter registers how to stop
// what it started in `cleanups` (stopped in reverse order by the caller).
import { mkdirSync } from "node:fs";
import { resolve } from "node:path";
import { redisPing } from "../src/infra/redis.ts";
import { freePort } from "../src/infra/ports.ts";
import { waitUntil } from "../src/infra/wait.ts";
import { PORT_OFFSETS } from "../src/shared/config.ts";
import { freeBasePort, report, ROOT, scrapeSum, startCluster } from "./lib.ts";
import type { Transport } from "./ws-load.ts";

export interface Target {
  name: string;
  transport: Transport;
  wsUrl: (client: number) => string;
  /** roots of the process trees whose CPU is sampled */
  pids: number[];
  /** messages persisted so far (sum over task instances), if the target stores them */
  persisted?: () => Promise<number>;
  /** port of the target's redis-server (for INFO commandstats per step) */
  redisPort?: number;
}

export type Cleanups = (() => Promise<void>)[];

const PASSWORD = "bench-password";

const withToken = (url: string, token: string) => `${url}${url.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}`;

/** Spawns a server script that prints its port as its first stdout line; stops it on cleanup. */
async function spawnServer(cmd: string[], cleanups: Cleanups): Promise<{ pid: number; port: number }> {
  const proc = Bun.spawn(cmd, { cwd: ROOT, stdout: "pipe", stderr: "inherit" });
  cleanups.push(async () => {
    proc.kill("SIGTERM");
    await proc.exited;
  });
  const { value } = await proc.stdout.getReader().read();
  const port = Number(new TextDecoder().decode(value).trim());
  if (!port) throw new Error(`${cmd.join(" ")}: did not print its port`);
  return { pid: proc.pid, port };
}

/** bench/baseline-pubsub.ts; client i is user i % users, as in the cluster run. */
export async function startBaseline(users: number, cleanups: Cleanups): Promise<Target> {
  const { pid, port } = await spawnServer(["bun", "bench/baseline-pubsub.ts"], cleanups);
  return { name: "baseline", transport: "ws", pids: [pid], wsUrl: (i) => withToken(`ws://127.0.0.1:${port}/ws`, `u${(i % users) + 1}`) };
}

/**
 * Socket.IO 4 on Node with @socket.io/redis-streams-adapter: a redis-server (no persistence:
 * the adapter only relays) and `instances` processes of bench/socketio-server.mjs; client i
 * talks to process i % instances, so every room spans every process, as with bunchat's connect.
 */
export async function startSocketIo(users: number, instances: number, cleanups: Cleanups): Promise<Target> {
  const redisPort = await freePort();
  const redis = Bun.spawn(["redis-server", "--port", String(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--logfile", ""], {
    stdout: "ignore",
    stderr: "inherit",
  });
  cleanups.push(async () => {
    redis.kill("SIGTERM");
    await redis.exited;
  });
  await waitUntil(() => redisPing(redisPort), { timeoutMs: 15_000, giveUp: () => (redis.exitCode !== null ? "redis-server for socket.io exited" : undefined) });
  const servers: { pid: number; port: number }[] = [];
  for (let k = 0; k < instances; k++) servers.push(await spawnServer(["/usr/bin/node", "bench/socketio-server.mjs", String(redisPort)], cleanups));
  report({ event: "setup", target: "socketio", redisPort, ports: servers.map((s) => s.port) });
  return {
    name: "socketio",
    transport: "socketio",
    pids: [redis.pid, ...servers.map((s) => s.pid)],
    redisPort,
    wsUrl: (i) => withToken(`http://127.0.0.1:${servers[i % instances].port}/`, `u${(i % users) + 1}`),
  };
}

/**
 * Registers `users` users (argon2id makes this ~tens of ms each) `concurrency` at a time. A busy
 * cluster may answer 429/503 after all (or time out) and still create the user: a retry that
 * then finds the name taken logs in instead.
 */
export async function register(apis: string[], users: number, prefix: string, concurrency: number): Promise<string[]> {
  const tokens: string[] = [];
  const retried: Record<string, number> = {};
  const post = (api: string, path: string, userName: string) =>
    fetch(`${api}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ userName, password: PASSWORD }),
      signal: AbortSignal.timeout(30_000),
    });
  let next = 0;
  const worker = async () => {
    while (next < users) {
      const i = next++;
      const api = apis[i % apis.length];
      const userName = `${prefix}u${i}`;
      for (let attempt = 0; ; attempt++) {
        let r: Response | undefined;
        try {
          r = await post(api, "/api/users", userName);
          if (r.status === 409 && attempt > 0) r = await post(api, "/api/sessions", userName);
        } catch (e) {
          if (attempt >= 40) throw e;
        }
        if (r?.ok) {
          tokens[i] = ((await r.json()) as { token: string }).token;
          break;
        }
        const why = r ? String(r.status) : "timeout";
        if (r && r.status !== 429 && r.status !== 503) throw new Error(`register ${userName}: HTTP ${r.status} ${await r.text()}`);
        // a loaded box may keep a fresh cluster unready (503) for tens of seconds: ~60 s in all
        if (attempt >= 40) throw new Error(`register ${userName}: still ${why} after ${attempt + 1} attempts`);
        retried[why] = (retried[why] ?? 0) + 1;
        await Bun.sleep(Math.min(2000, 200 * (attempt + 1)));
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  if (Object.keys(retried).length) report({ event: "register-retries", ...retried });
  return tokens;
}

export interface BunchatOptions {
  users: number;
  runId: string;
  /** --api/--logic/--task/--connect counts and an optional --base-port */
  topology: { api: string; logic: string; task: string; connect: string; basePort?: string; colocate?: string };
  /** extra IM_* settings, "IM_NAME=value" */
  im: string[];
  /** directory for CPU profiles of every Bun process (BUN_OPTIONS) */
  cpuProf?: string;
}

export async function startBunchat(o: BunchatOptions, cleanups: Cleanups): Promise<Target> {
  // The rate limiter is not what is measured: every user may send far more than the bench does.
  const env: Record<string, string> = { IM_RATE_LIMIT: "100000", IM_RATE_BURST: "100000" };
  for (const kv of o.im) {
    const at = kv.indexOf("=");
    if (!kv.startsWith("IM_") || at < 0) throw new Error(`--im wants IM_NAME=value, got ${kv}`);
    env[kv.slice(0, at)] = kv.slice(at + 1);
  }
  if (o.cpuProf) {
    const dir = resolve(o.cpuProf);
    mkdirSync(dir, { recursive: true });
    env.BUN_OPTIONS = `--cpu-prof --cpu-prof-dir=${dir}`; // summarise with bench/profile-summary.ts
  }
  const t = o.topology;
  const basePort = t.basePort ?? String(freeBasePort());
  const args = ["--base-port", basePort, "--api", t.api, "--logic", t.logic, "--task", t.task, "--connect", t.connect];
  // Co-located roles (src/bin/node.ts): "all" → --colocate, a list → --colocate-roles.
  if (t.colocate) args.push(...(t.colocate === "all" ? ["--colocate"] : ["--colocate-roles", t.colocate]));
  const t0 = performance.now();
  const cluster = await startCluster(args, env);
  cleanups.push(() => cluster.stop());
  const started = performance.now();
  // few at a time: on a loaded box, 8 argon2id hashes in flight outlast the 5 s RPC deadline and retries pile up
  const tokens = await register(cluster.api, o.users, `b${o.runId}`, 3);
  report({
    event: "setup",
    target: "bunchat",
    clusterArgs: args.join(" "),
    env,
    clusterReadySec: Math.round(started - t0) / 1000,
    registerSec: Math.round(performance.now() - started) / 1000,
    connect: cluster.connect,
  });
  return {
    name: "bunchat",
    transport: "ws",
    pids: [cluster.pid],
    redisPort: Number(basePort) + PORT_OFFSETS.redis,
    // Client i talks to connect instance i % n: a room's clients span every instance.
    wsUrl: (i) => withToken(cluster.connect[i % cluster.connect.length], tokens[i % o.users]),
    persisted: async () => {
      const { sum, failed } = await scrapeSum(cluster.metrics, "bunchat_task_rows_persisted_total");
      if (failed.length === cluster.metrics.length) throw new Error("no /metrics endpoint answered");
      return sum;
    },
  };
}
