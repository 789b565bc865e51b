// A password-hashing thread of HashPool (hash-pool.ts). Its first message sets its own scheduling
// priority (IM_HASH_NICE, default 10; on Linux setpriority on the calling thread affects that
// thread only), so under a flood of logins the kernel runs logic's event loop, Redis and the other
// tiers first and argon2 gets what is left. Runs one job at a time, synchronously, on this thread.
import { setPriority } from "node:os";

declare const self: Worker;

export type HashJob =
  | { nice: number }
  | { id: number; op: "hash"; password: string } | { id: number; op: "verify"; password: string; hash: string };
export type HashResult = { id: number; ok: string | boolean } | { id: number; err: string };

self.onmessage = (e: MessageEvent<HashJob>) => {
  const job = e.data;
  if ("nice" in job) {
    try {
      setPriority(job.nice);
    } catch {
      // Not permitted (an unusual sandbox): hash at normal priority.
    }
    return;
  }
  let res: HashResult;
  try {
    res = {
      id: job.id,
      ok: job.op === "hash" ? Bun.password.hashSync(job.password, { algorithm: "argon2id" }) : Bun.password.verifySync(job.password, job.hash),
    };
  } catch (err) {
    res = { id: job.id, err: err instanceof Error ? err.name : "error" };
  }
  self.postMessage(res);
};
