// 64-bit, roughly time-ordered message ids: 41 bits of ms since EPOCH, 10 bits of worker id,
// 12 bits of sequence (4096 ids per ms per worker). Worker ids are leased in etcd so that two
// live logic instances never share one.
import type { Lease } from "etcd3";
import type { Discovery } from "../shared/discovery.ts";
import { AppError } from "../shared/errors.ts";

const EPOCH = 1_735_689_600_000n; // 2025-01-01T00:00:00Z
export const MAX_WORKERS = 1024;

export class Snowflake {
  private lastMs = 0;
  private seq = 0;

  constructor(readonly workerId: number) {
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

/** How long before the lease's earliest possible expiry minting stops: room for the minting itself and clock rate. */
const MINT_MARGIN_MS = 250;
/** How often a mint that waits for a confirmed lease checks again (ms). */
const WAIT_STEP_MS = 25;

export interface WorkerIdLease {
  /**
   * The id generator, while this process surely still holds its worker id. A lease whose keepalives
   * are not answered may be expired by etcd TTL after the last answered one was sent, and another
   * instance may then claim the id: minting stops MINT_MARGIN_MS before that, and after a loss
   * until an id is claimed again (usually another one). Waits up to waitMs (default 2000) for that;
   * then rejects with UNAVAILABLE (a send that cannot be accepted: see CONTRACT.md).
   */
  ids(waitMs?: number): Snowflake | Promise<Snowflake>;
  /** Revokes the lease, freeing the worker id. */
  close(): Promise<void>;
}

/** Claims the lowest free worker id under its own kept lease, and again after the lease is lost. */
export async function leaseWorkerId(discovery: Discovery, instanceId: string, onChange: (workerId: number) => void): Promise<WorkerIdLease> {
  let ids: Snowflake | undefined;
  /** The generator before a loss: kept if the same id is claimed again, so its ids keep growing. */
  let last: Snowflake | undefined;
  const claim = async (lease: Lease) => {
    const leaseId = await lease.grant();
    for (let n = 0; n < MAX_WORKERS; n++) {
      const key = `${discovery.prefix}/workerids/${n}`;
      const res = await discovery.etcd.if(key, "Create", "==", 0).then(discovery.etcd.put(key).value(instanceId).lease(leaseId)).commit();
      if (res.succeeded) {
        ids = last?.workerId === n ? last : new Snowflake(n);
        return onChange(n);
      }
    }
    throw new Error("no free snowflake worker id");
  };
  // The old id may be claimed by another instance as soon as the lease is gone: stop at once.
  const kept = discovery.keptLease(claim, () => {
    last = ids;
    ids = undefined;
  });
  await claim(kept.current());
  const usable = () => (ids && performance.now() < kept.earliestExpiry() - MINT_MARGIN_MS ? ids : undefined);
  return {
    ids: (waitMs = 2000) => usable() ?? waitForIds(usable, waitMs),
    close: kept.close,
  };
}

async function waitForIds(usable: () => Snowflake | undefined, waitMs: number): Promise<Snowflake> {
  for (const end = performance.now() + waitMs; performance.now() < end; ) {
    await Bun.sleep(WAIT_STEP_MS);
    const ids = usable();
    if (ids) return ids;
  }
  throw new AppError("UNAVAILABLE", "message ids unavailable: etcd lease not confirmed");
}
