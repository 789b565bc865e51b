// Password hashing (argon2id, Bun.password: ~64 MiB and 0.1-1 s of one core per job, depending
// on load) with bounded concurrency and a bounded queue. A job is refused at once with
// RATE_LIMITED and a Retry-After when the queue is full, or when its expected wait (queue length
// × the recent job time / concurrency) is over waitBudgetMs; a queued job that still waited
// longer than maxWaitMs is refused instead of started. So a flood of logins or registrations gets
// fast 429s instead of RPC deadline timeouts (503, logic's callers wait 5 s), and leaves CPU for
// sends and token checks (issue 10 item 4). Jobs run on `concurrency` worker threads at a lower
// scheduling priority (hash-worker.ts), so what hashing does take is what the rest leaves.
import { Counter, Gauge, type Registry } from "prom-client";
import { AppError } from "../shared/errors.ts";
import type { HashJob, HashResult } from "./hash-worker.ts";

const WORKER_URL = new URL("./hash-worker.ts", import.meta.url).href;

/** One hashing thread and the job it runs, if any. */
class HashThread {
  private readonly worker = new Worker(WORKER_URL);
  private pending?: { id: number; res: (v: string | boolean) => void; rej: (e: unknown) => void };
  broken = false;

  constructor(nice: number) {
    this.worker.unref();
    this.worker.postMessage({ nice });
    this.worker.onmessage = (e: MessageEvent<HashResult>) => {
      const p = this.pending;
      if (!p || p.id !== e.data.id) return;
      this.pending = undefined;
      if ("err" in e.data) p.rej(new Error(`password hashing failed: ${e.data.err}`));
      else p.res(e.data.ok);
    };
    this.worker.onerror = () => {
      this.broken = true;
      this.pending?.rej(new Error("password hashing thread failed"));
      this.pending = undefined;
    };
  }

  run(job: Exclude<HashJob, { nice: number }>): Promise<string | boolean> {
    return new Promise((res, rej) => {
      this.pending = { id: job.id, res, rej };
      this.worker.postMessage(job);
    });
  }

  terminate(): void {
    this.worker.terminate();
  }
}

export interface HashPoolOptions {
  /** Jobs running at once (IM_HASH_CONCURRENCY). */
  concurrency: number;
  /** Jobs waiting at most (IM_HASH_QUEUE); 0: none wait. */
  maxQueue: number;
  /** Scheduling priority of the hashing threads, 0-19 (IM_HASH_NICE; default 10: a nice-0 thread gets ~10x their CPU share). */
  nice?: number;
  /** A job whose expected wait is longer is refused at once (default 2500 ms). */
  waitBudgetMs?: number;
  /** A job still queued after this long is refused (default 3000 ms: room for the job itself within the 5 s RPC deadline). */
  maxWaitMs?: number;
  registry?: Registry;
}

type Kind = "hash" | "verify";

/** Retry-After of a refused job, in seconds. */
const RETRY_AFTER_SEC = 1;

export class HashPool {
  private running = 0;
  private readonly queue: { start: () => void; refuse: () => void; at: number }[] = [];
  private readonly jobs?: Counter<"kind" | "result">;
  private readonly maxWaitMs: number;
  private readonly waitBudgetMs: number;
  /** Moving average of a job's run time in ms (weight 0.2 for the latest). */
  private jobMs = 200;
  private readonly idle: HashThread[] = [];
  private readonly threads = new Set<HashThread>();
  private jobNo = 0;

  constructor(private readonly o: HashPoolOptions) {
    this.maxWaitMs = o.maxWaitMs ?? 3000;
    this.waitBudgetMs = o.waitBudgetMs ?? 2500;
    if (o.registry) {
      this.jobs = new Counter({
        name: "bunchat_logic_password_jobs_total",
        help: "Password hash/verify jobs by kind and result (done, refused: pool full or waited too long)",
        labelNames: ["kind", "result"],
        registers: [o.registry],
      });
      const self = this;
      new Gauge({
        name: "bunchat_logic_password_queue",
        help: "Password jobs waiting for a slot",
        registers: [o.registry],
        collect() {
          this.set(self.queue.length);
        },
      });
    }
  }

  /**
   * Throws the pool's RATE_LIMITED now if a job would be refused now: lets a caller skip its
   * other work (Redis counters) for a request that cannot be served. The job itself is still
   * admitted or refused by hash()/verify().
   */
  checkRoom(kind: Kind): void {
    if (this.running >= this.o.concurrency && !this.hasRoom()) throw this.refused(kind);
  }

  /** argon2id hash of password. Throws RATE_LIMITED when the pool is full. */
  hash(password: string): Promise<string> {
    return this.run("hash", { op: "hash", password }) as Promise<string>;
  }

  /** Bun.password.verify. Throws RATE_LIMITED when the pool is full (the password was not checked). */
  verify(password: string, hash: string): Promise<boolean> {
    return this.run("verify", { op: "verify", password, hash }) as Promise<boolean>;
  }

  /** Stops the hashing threads (jobs in flight fail). */
  close(): void {
    for (const t of this.threads) t.terminate();
    this.threads.clear();
    this.idle.length = 0;
  }

  private async run(kind: Kind, job: { op: "hash"; password: string } | { op: "verify"; password: string; hash: string }): Promise<string | boolean> {
    if (this.running >= this.o.concurrency) await this.wait(kind);
    else this.running++;
    // Holding a slot: at most `concurrency` threads ever exist, and one of them is free.
    let thread = this.idle.pop();
    if (!thread) {
      thread = new HashThread(this.o.nice ?? 10);
      this.threads.add(thread);
    }
    const started = performance.now();
    try {
      const out = await thread.run({ ...job, id: ++this.jobNo });
      this.jobs?.inc({ kind, result: "done" });
      return out;
    } finally {
      this.jobMs = 0.8 * this.jobMs + 0.2 * (performance.now() - started);
      if (thread.broken) {
        this.threads.delete(thread);
        thread.terminate();
      } else if (this.threads.has(thread)) this.idle.push(thread);
      this.release();
    }
  }

  /** Waits for a slot, which release() hands over with running unchanged. */
  private wait(kind: Kind): Promise<void> {
    if (!this.hasRoom()) return Promise.reject(this.refused(kind));
    return new Promise((start, reject) => this.queue.push({ start, refuse: () => reject(this.refused(kind)), at: Date.now() }));
  }

  /** Room in the queue, and a wait there expected within waitBudgetMs. */
  private hasRoom(): boolean {
    const expectedWaitMs = ((this.queue.length + 1) * this.jobMs) / this.o.concurrency;
    return this.queue.length < this.o.maxQueue && expectedWaitMs <= this.waitBudgetMs;
  }

  private refused(kind: Kind): AppError {
    this.jobs?.inc({ kind, result: "refused" });
    return new AppError("RATE_LIMITED", "the server is busy checking passwords; try again shortly", RETRY_AFTER_SEC);
  }

  private release(): void {
    const now = Date.now();
    for (let next = this.queue.shift(); next; next = this.queue.shift()) {
      if (now - next.at <= this.maxWaitMs) return next.start();
      next.refuse();
    }
    this.running--;
  }
}
