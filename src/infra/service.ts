// A long-running infrastructure server (redis-server, mariadbd, etcd) as a child process we
// own: started on a fixed port and data folder, waited on until it answers, stopped by PID.
import { createWriteStream } from "node:fs";
import type { Logger } from "../shared/log.ts";
import { Child } from "./child.ts";
import type { OrphanGuard } from "./guard.ts";
import { isPortFree } from "./ports.ts";
import { waitUntil } from "./wait.ts";
import { restartDelays } from "../cluster/supervisor.ts";

export interface Service {
  readonly name: string;
  readonly port: number;
  /** PID of the running process, undefined while stopped. */
  readonly pid: number | undefined;
  /** Starts again on the same port and data folder and waits until it answers; no-op if running. */
  start(): Promise<void>;
  /** SIGTERM, SIGKILL after a timeout; resolves once the process has exited. No-op if stopped. */
  stop(): Promise<void>;
}

export interface ServiceSpec {
  name: string;
  port: number;
  /** Full command line; may throw when the binary is missing. */
  command(): string[];
  /** One probe: true once the server answers. */
  ready(): Promise<boolean>;
  readyTimeoutMs: number;
  /** Runs before every start (e.g. create the data folder, initialise it on first use). */
  prepare?(ctx: { signal?: AbortSignal; guard?: OrphanGuard }): Promise<void>;
  /** Runs after every successful start (e.g. fix up access rights). */
  afterReady?(): Promise<void>;
  /** Grace period after SIGTERM before SIGKILL; default 15 s (a database may flush). */
  stopTimeoutMs?: number;
}

export interface ServiceContext {
  log: Logger;
  /**
   * Restart the process when it exits on its own (not by stop()), on the same port and data
   * folder, after a backoff like a role's (src/cluster/supervisor.ts). Default false.
   */
  keepAlive?: boolean;
  /** Every output line of the process is appended here. */
  logFile: string;
  signal?: AbortSignal;
  guard?: OrphanGuard;
}

export function createService(spec: ServiceSpec, ctx: ServiceContext): Service {
  const log = ctx.log.child({ service: spec.name });
  let child: Child | undefined;
  let stopping = false;
  /** Set by stop(): no more restarts. */
  let stopped = false;
  const delays = restartDelays();

  /** After an exit of its own: start again with backoff until it answers or stop() is called. */
  async function restart(startedAt: number): Promise<void> {
    let ranMs = Date.now() - startedAt;
    while (!stopped) {
      const delayMs = delays(ranMs);
      ranMs = 0; // a failed start did not run
      log.info("service restarting", { inMs: delayMs });
      await Bun.sleep(delayMs);
      if (stopped || child?.running) return;
      try {
        await start();
        return;
      } catch (err) {
        log.error("service could not be restarted", { err: (err as Error).message });
      }
    }
  }

  async function start(): Promise<void> {
    if (child?.running) return;
    stopped = false;
    await spec.prepare?.({ signal: ctx.signal, guard: ctx.guard });
    if (!(await isPortFree(spec.port))) {
      throw new Error(`${spec.name}: port ${spec.port} on 127.0.0.1 is already in use (left over from an earlier run? stop that process or choose other ports)`);
    }
    const out = createWriteStream(ctx.logFile, { flags: "a" });
    const c = new Child({ cmd: spec.command(), onLine: (line) => out.write(line + "\n"), tailLines: 30, guard: ctx.guard });
    child = c;
    stopping = false;
    log.info("service started", { pid: c.pid, port: spec.port });
    const startedAt = Date.now();
    c.exited.then((code) => {
      out.end();
      if (stopping) return;
      log.warn("service exited", { pid: c.pid, code });
      if (ctx.keepAlive && !stopped && child === c && ready) void restart(startedAt);
    });
    let ready = false;
    try {
      await waitUntil(spec.ready, {
        timeoutMs: spec.readyTimeoutMs,
        intervalMs: 100,
        signal: ctx.signal,
        giveUp: () => (c.running ? undefined : "exited before it was ready"),
      });
      await spec.afterReady?.();
    } catch (err) {
      const exitedEarly = !c.running;
      await stopChild();
      if (ctx.signal?.aborted) throw err;
      const why = `${(err as Error).message}${exitedEarly ? `, exit code ${await c.exited}` : ""}`;
      throw new Error(`${spec.name} failed to start (${why}); last output (full log: ${ctx.logFile}):\n${c.tail()}`);
    }
    ready = true;
    log.info("service ready", { pid: c.pid, port: spec.port });
  }

  async function stop(): Promise<void> {
    stopped = true;
    await stopChild();
  }

  async function stopChild(): Promise<void> {
    const c = child;
    if (!c) return;
    stopping = true;
    const code = await c.stop(spec.stopTimeoutMs ?? 15_000);
    if (child === c) child = undefined;
    log.info("service stopped", { pid: c.pid, code });
  }

  return {
    name: spec.name,
    port: spec.port,
    get pid() {
      return child?.running ? child.pid : undefined;
    },
    start,
    stop,
  };
}
