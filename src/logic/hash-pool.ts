// Password hashing (argon2id, Bun.password: ~64 MiB and tens to hundreds of ms of one core per
// job) with bounded concurrency and a bounded queue. Beyond them a job is refused at once with
// RATE_LIMITED and a Retry-After, and a queued job that waited longer than maxWaitMs is refused
// too, so a flood of logins or registrations gets fast 429s instead of RPC deadline timeouts (503),
// and leaves CPU for sends and token checks (issue 10 item 4).
import { Counter, Gauge, type Registry } from "prom-client";
import { AppError } from "../shared/errors.ts";

export interface HashPoolOptions {
  /** Jobs running at once (IM_HASH_CONCURRENCY). */
  concurrency: number;
  /** Jobs waiting at most (IM_HASH_QUEUE); 0: none wait. */
  maxQueue: number;
  /** A job still queued after this long is refused (default 2000 ms, well under the 5 s RPC deadline). */
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

  constructor(private readonly o: HashPoolOptions) {
    this.maxWaitMs = o.maxWaitMs ?? 2000;
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

  /** argon2id hash of password. Throws RATE_LIMITED when the pool is full. */
  hash(password: string): Promise<string> {
    return this.run("hash", () => Bun.password.hash(password, { algorithm: "argon2id" }));
  }

  /** Bun.password.verify. Throws RATE_LIMITED when the pool is full (the password was not checked). */
  verify(password: string, hash: string): Promise<boolean> {
    return this.run("verify", () => Bun.password.verify(password, hash));
  }

  private async run<T>(kind: Kind, job: () => Promise<T>): Promise<T> {
    if (this.running >= this.o.concurrency) await this.wait(kind);
    else this.running++;
    try {
      const out = await job();
      this.jobs?.inc({ kind, result: "done" });
      return out;
    } finally {
      this.release();
    }
  }

  /** Waits for a slot, which release() hands over with running unchanged. */
  private wait(kind: Kind): Promise<void> {
    const refused = () => {
      this.jobs?.inc({ kind, result: "refused" });
      return new AppError("RATE_LIMITED", "the server is busy checking passwords; try again shortly", RETRY_AFTER_SEC);
    };
    if (this.queue.length >= this.o.maxQueue) return Promise.reject(refused());
    return new Promise((start, reject) => this.queue.push({ start, refuse: () => reject(refused()), at: Date.now() }));
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
