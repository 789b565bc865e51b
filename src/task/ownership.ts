// Partition ownership: each stream partition is processed by exactly one live task worker at a
// time, so every conversation is delivered in seq order. Workers register as service "task"; each
// computes its share by rendezvous hashing over the live set and takes a lock key per partition,
// created in an etcd txn only if absent and bound to its lease. A dead worker's locks vanish with
// its lease (leaseTtlSec); survivors see the delete (watch) or poll and take over within ~1 s.
// If keepalives stop succeeding, the worker stops all consumers before its lease can expire.
import type { Lease } from "etcd3";
import type { Discovery, ServiceWatch } from "../shared/discovery.ts";
import type { Logger } from "../shared/log.ts";
import { assignedTo } from "./rendezvous.ts";

export interface OwnershipOptions {
  discovery: Discovery;
  id: string;
  partitions: number;
  log: Logger;
  /** Start processing partition p. Called once per acquisition. */
  onAcquire(p: number): Promise<void>;
  /** Stop processing partition p and wait for in-flight work. */
  onRelease(p: number): Promise<void>;
  /** How often to re-check locks and lease health, in ms (default 500). */
  tickMs?: number;
}

interface Watcher {
  cancel(): Promise<void>;
}

export class PartitionOwnership {
  private readonly owned = new Set<number>();
  private lease?: { current: () => Lease; close: () => Promise<void> };
  private leaseId = "";
  /** The lease our locks are bound to; events of older leases are ignored. */
  private mine?: Lease;
  private readonly releasing = new Map<number, Promise<void>>();
  private lastKeepalive = 0;
  private workers?: ServiceWatch;
  private lockWatch?: Watcher;
  private timer?: ReturnType<typeof setInterval>;
  private stopped = false;
  private running?: Promise<void>;
  private again = false;
  private failures = 0;
  private readonly log: Logger;

  constructor(private readonly o: OwnershipOptions) {
    this.log = o.log.child({ component: "ownership" });
  }

  get prefix(): string {
    return `${this.o.discovery.prefix}/partitions/`;
  }

  lockKey(p: number): string {
    return `${this.prefix}${p}`;
  }

  /** Partitions this worker holds now. */
  ownedPartitions(): number[] {
    return [...this.owned].sort((a, b) => a - b);
  }

  async start(): Promise<void> {
    const { discovery, id } = this.o;
    const serviceKey = discovery.serviceKey("task", id);
    const value = JSON.stringify({ id, addr: "" });
    this.lease = discovery.keptLease(async (l) => {
      // A new lease after a loss: re-register, then re-acquire through reconcile.
      await this.adopt(l);
      await l.put(serviceKey).value(value).exec();
      void this.kick();
    });
    await this.adopt(this.lease.current());
    await this.lease.current().put(serviceKey).value(value).exec();
    const lockWatch = await discovery.etcd.watch().prefix(this.prefix).create();
    lockWatch.on("delete", (kv) => this.onLockDeleted(kv.key.toString()));
    lockWatch.on("error", (err) => this.log.warn("etcd lock watch error", { err: err.message }));
    this.lockWatch = lockWatch;
    // The watch reports once before it returns: the first reconcile waits for the full live set.
    this.workers = await discovery.watch("task", () => {
      if (this.workers) void this.kick();
    });
    this.timer = setInterval(() => void this.kick(), this.o.tickMs ?? 500);
    await this.kick();
  }

  /**
   * Deregisters first, so the other workers compute the new assignment at once and each acquires
   * its share as soon as the lock is deleted; then releases every partition and revokes the lease.
   */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.timer);
    await this.o.discovery.etcd
      .delete()
      .key(this.o.discovery.serviceKey("task", this.o.id))
      .exec()
      .catch((err) => this.log.warn("deregistration failed; it expires with the lease", { err }));
    await this.running;
    await Promise.all([...this.owned].map((p) => this.release(p, true)));
    await Promise.all(this.releasing.values());
    await this.workers?.close();
    await this.lockWatch?.cancel();
    await this.lease?.close();
  }

  private async adopt(l: Lease): Promise<void> {
    this.mine = l;
    this.lastKeepalive = 0;
    l.on("keepaliveSucceeded", () => {
      if (l === this.mine) this.lastKeepalive = Date.now();
    });
    l.on("lost", () => {
      if (l !== this.mine) return;
      this.log.warn("lease lost, stopping all partitions");
      this.lastKeepalive = 0;
      void this.kick();
    });
    const id = String(await l.grant());
    if (l !== this.mine) return;
    this.leaseId = id;
    this.lastKeepalive = Date.now();
  }

  /** Keepalives run every ttl/3; after 60% of the TTL without one, the lease may be about to expire. */
  private leaseHealthy(): boolean {
    return Date.now() - this.lastKeepalive < this.o.discovery.leaseTtlSec * 600;
  }

  private onLockDeleted(key: string): void {
    const p = Number(key.slice(this.prefix.length));
    // Our own lock deleted while we think we hold it (lease expired on the server): stop at once.
    if (this.owned.has(p)) {
      this.log.warn("partition lock vanished while owned", { partition: p });
      void this.release(p, false);
    }
    void this.kick();
  }

  /** Runs reconcile now, or once more after the one in progress; resolves when that run ends. */
  private kick(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (this.running) {
      this.again = true;
      return this.running;
    }
    const run = async () => {
      do {
        this.again = false;
        try {
          await this.reconcileOnce();
          if (this.failures) this.log.info("partition reconcile recovered", { failures: this.failures });
          this.failures = 0;
        } catch (err) {
          // Ticks every 500 ms: an etcd outage logs once at warn, then at debug.
          if (this.failures++ === 0) this.log.warn("partition reconcile failed", { err });
          else this.log.debug("partition reconcile failed again", { err: (err as Error)?.message, failures: this.failures });
        }
      } while (this.again && !this.stopped);
    };
    this.running = run().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async reconcileOnce(): Promise<void> {
    if (this.stopped) return;
    if (!this.leaseHealthy()) {
      if (this.owned.size) this.log.warn("lease unhealthy, releasing partitions", { partitions: this.ownedPartitions() });
      await Promise.all([...this.owned].map((p) => this.release(p, false)));
      return;
    }
    const live = new Set(this.workers?.instances().keys() ?? []);
    live.add(this.o.id);
    const want = new Set(assignedTo(this.o.id, this.o.partitions, live));
    const drop = [...this.owned].filter((p) => !want.has(p));
    const take = [...want].filter((p) => !this.owned.has(p));
    const results = await Promise.allSettled([...drop.map((p) => this.release(p, true)), ...take.map((p) => this.acquire(p))]);
    const failed = results.find((r) => r.status === "rejected");
    if (failed) throw failed.reason;
  }

  private async acquire(p: number): Promise<void> {
    // Still stopping the previous run of this partition: try again on a later tick.
    if (this.releasing.has(p)) return;
    const { etcd } = this.o.discovery;
    const key = this.lockKey(p);
    const leaseId = this.leaseId;
    const res = await etcd
      .if(key, "Create", "==", 0)
      .then(etcd.put(key).value(this.o.id).lease(leaseId))
      .else(etcd.get(key))
      .commit();
    if (!res.succeeded) {
      // Still ours under the current lease (e.g. released after a keepalive hiccup): take it back.
      const kv = res.responses[0]?.response_range?.kvs?.[0];
      if (kv?.value.toString() !== this.o.id || String(kv.lease) !== leaseId) return;
    }
    if (this.stopped || this.owned.has(p)) return;
    this.owned.add(p);
    this.log.info("partition acquired", { partition: p });
    await this.o.onAcquire(p);
  }

  /** Stops partition p's work; deletes its lock (if still ours) when deleteLock is set. */
  private async release(p: number, deleteLock: boolean): Promise<void> {
    if (!this.owned.delete(p)) return this.releasing.get(p);
    const done = this.o.onRelease(p).finally(() => this.releasing.delete(p));
    this.releasing.set(p, done);
    await done;
    this.log.info("partition released", { partition: p });
    if (!deleteLock) return;
    const { etcd } = this.o.discovery;
    const key = this.lockKey(p);
    await etcd
      .if(key, "Value", "==", this.o.id)
      .then(etcd.delete().key(key))
      .commit()
      .catch((err) => this.log.warn("partition unlock failed; it expires with the lease", { partition: p, err }));
  }
}
