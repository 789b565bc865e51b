// 64-bit, roughly time-ordered message ids: 41 bits of ms since EPOCH, 10 bits of worker id,
// 12 bits of sequence (4096 ids per ms per worker). Worker ids are leased in etcd so that two
// live logic instances never share one.
import type { Lease } from "etcd3";
import type { Discovery } from "../shared/discovery.ts";

const EPOCH = 1_735_689_600_000n; // 2025-01-01T00:00:00Z
export const MAX_WORKERS = 1024;

export class Snowflake {
  private lastMs = 0;
  private seq = 0;

  constructor(private readonly workerId: number) {
    if (!Number.isInteger(workerId) || workerId < 0 || workerId >= MAX_WORKERS) throw new Error(`bad worker id ${workerId}`);
  }

  next(now = Date.now()): string {
    // A clock that steps back must not produce a smaller id: keep using the last ms.
    if (now < this.lastMs) now = this.lastMs;
    if (now === this.lastMs) {
      this.seq = (this.seq + 1) & 0xfff;
      if (this.seq === 0) now = ++this.lastMs; // 4096 ids used up in this ms: borrow the next one
    } else {
      this.seq = 0;
    }
    this.lastMs = now;
    return ((BigInt(now) - EPOCH) << 22n | (BigInt(this.workerId) << 12n) | BigInt(this.seq)).toString();
  }
}

/**
 * Claims the lowest free worker id under its own kept lease; onChange gets it now and again if
 * the lease is lost and re-granted (another instance may have taken the old id meanwhile).
 */
export async function leaseWorkerId(discovery: Discovery, instanceId: string, onChange: (workerId: number) => void): Promise<() => Promise<void>> {
  const claim = async (lease: Lease) => {
    const leaseId = await lease.grant();
    for (let n = 0; n < MAX_WORKERS; n++) {
      const key = `${discovery.prefix}/workerids/${n}`;
      const res = await discovery.etcd.if(key, "Create", "==", 0).then(discovery.etcd.put(key).value(instanceId).lease(leaseId)).commit();
      if (res.succeeded) return onChange(n);
    }
    throw new Error("no free snowflake worker id");
  };
  const kept = discovery.keptLease(claim);
  await claim(kept.current());
  return kept.close;
}
