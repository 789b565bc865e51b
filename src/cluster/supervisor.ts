// Keeps one role process running, like a process supervisor: a process that dies is logged
// and started again after a backoff that doubles from initialMs up to maxMs, and goes back to
// initialMs once a process has stayed up for resetAfterMs.
import { Child } from "../infra/child.ts";
import type { OrphanGuard } from "../infra/guard.ts";
import type { Logger } from "../shared/log.ts";

export interface Backoff {
  initialMs: number;
  maxMs: number;
  resetAfterMs: number;
}
export const DEFAULT_BACKOFF: Backoff = { initialMs: 200, maxMs: 5_000, resetAfterMs: 30_000 };

/**
 * The restart delays (ms) of one supervised process, from a Backoff: call it once per restart
 * with how long (ms) the process ran; the delay doubles from initialMs up to maxMs and starts
 * again at initialMs after a run of resetAfterMs or more. Used by Supervised (roles) and
 * infra/service.ts (Redis, MariaDB, etcd).
 */
export function restartDelays(b: Backoff = DEFAULT_BACKOFF): (ranMs: number) => number {
  let next = b.initialMs;
  return (ranMs) => {
    if (ranMs >= b.resetAfterMs) next = b.initialMs;
    const delay = next;
    next = Math.min(next * 2, b.maxMs);
    return delay;
  };
}

export interface SupervisedOptions {
  cmd: string[];
  env: Record<string, string | undefined>;
  cwd?: string;
  /** Carries role and index: every record names the instance. */
  log: Logger;
  onLine?: (line: string) => void;
  backoff?: Backoff;
  guard?: OrphanGuard;
}

export class Supervised {
  /** Times a process exited on its own (not stopped by us). */
  exits = 0;
  private child?: Child;
  private stopping = false;
  private loop?: Promise<void>;
  private wake?: () => void;

  constructor(private readonly opts: SupervisedOptions) {}

  get pid(): number | undefined {
    return this.child?.running ? this.child.pid : undefined;
  }

  /** Last output lines of the current (or last) process. */
  tail(): string {
    return this.child?.tail() ?? "";
  }

  start(): void {
    this.loop ??= this.run();
  }

  /** SIGTERM, SIGKILL after timeoutMs; no restart afterwards. */
  async stop(timeoutMs = 10_000): Promise<void> {
    this.stopping = true;
    this.wake?.();
    const child = this.child;
    if (child?.running) {
      const code = await child.stop(timeoutMs);
      this.opts.log.info("role stopped", { pid: child.pid, code });
    }
    await this.loop;
  }

  private async run(): Promise<void> {
    const delays = restartDelays(this.opts.backoff);
    const { log } = this.opts;
    while (!this.stopping) {
      const startedAt = Date.now();
      try {
        this.child = new Child({ cmd: this.opts.cmd, env: this.opts.env, cwd: this.opts.cwd, onLine: this.opts.onLine, guard: this.opts.guard });
        log.info("role started", { pid: this.child.pid });
        const code = await this.child.exited;
        if (this.stopping) break;
        log.warn("role exited", { pid: this.child.pid, code });
      } catch (err) {
        log.error("role could not be started", { err });
      }
      this.exits++;
      const delayMs = delays(Date.now() - startedAt);
      log.info("role restarting", { inMs: delayMs });
      await this.sleep(delayMs);
    }
  }

  /** A pause that stop() cuts short. */
  private async sleep(ms: number): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await new Promise<void>((resolve) => {
      this.wake = resolve;
      timer = setTimeout(resolve, ms);
    });
    clearTimeout(timer);
    this.wake = undefined;
  }
}
