// Service discovery on etcd: instances register <prefix>/services/<service>/<id> under a lease kept
// alive; watchers keep a live map of instances. A dead instance disappears within the lease TTL.
import { Etcd3, type Lease, type Watcher } from "etcd3";
import type { Logger } from "./log.ts";

export interface InstanceInfo {
  id: string;
  /** host:port of its gRPC server (connect: ConnectRPC; logic: LogicRPC); empty for roles without one. */
  addr: string;
  /** Role-specific extras, e.g. connect's public wsUrl and connection count. */
  meta?: Record<string, unknown>;
}

export interface Registration {
  update(info: InstanceInfo): Promise<void>;
  close(): Promise<void>;
}

export type Instances = ReadonlyMap<string, InstanceInfo>;

export interface KeptLease {
  current(): Lease;
  /** performance.now() ms before which etcd cannot have expired the current lease (see keptLease). */
  earliestExpiry(): number;
  close(): Promise<void>;
}

export interface ServiceWatch {
  instances(): Instances;
  close(): Promise<void>;
}

export class Discovery {
  readonly etcd: Etcd3;
  private closed = false;
  /** Leases made here, revoked by close(): closing the client alone leaves keepalives running. */
  private readonly leases = new Set<{ close: () => Promise<void> }>();

  constructor(
    private readonly opts: { endpoints: string[]; prefix: string; leaseTtlSec: number; log: Logger },
  ) {
    this.etcd = new Etcd3({ hosts: opts.endpoints, dialTimeout: 3000 });
  }

  get prefix(): string {
    return this.opts.prefix;
  }

  get leaseTtlSec(): number {
    return this.opts.leaseTtlSec;
  }

  serviceKey(service: string, id = ""): string {
    return `${this.opts.prefix}/services/${service}/${id}`;
  }

  /**
   * A lease that re-grants itself if lost (it expired, e.g. after a stall longer than the TTL, or
   * etcd restarted): onLost runs once per loss, then onRenew (retried with backoff) re-puts keys.
   * earliestExpiry() is the soonest moment (performance.now() ms) etcd may expire the current
   * lease: the TTL after the grant or the last keepalive etcd answered was sent, so a holder that
   * stops using what the lease guards before then never overlaps with the next holder.
   */
  keptLease(onRenew: (lease: Lease) => Promise<void>, onLost?: () => void): KeptLease {
    const ttlMs = this.opts.leaseTtlSec * 1000;
    let confirmed = performance.now();
    let lease = this.etcd.lease(this.opts.leaseTtlSec, { autoKeepAlive: true });
    let stopped = false;
    const arm = (l: Lease) => {
      // etcd answers a lease's keepalives in order on its stream; a new stream starts afresh.
      const fired: number[] = [];
      l.on("keepaliveEstablished", () => void (fired.length = 0));
      l.on("keepaliveFired", () => void fired.push(performance.now()));
      l.on("keepaliveSucceeded", () => {
        const sent = fired.shift();
        if (sent !== undefined && l === lease) confirmed = sent;
      });
      l.on("lost", async (err) => {
        if (stopped || this.closed) return;
        this.opts.log.warn("etcd lease lost, re-registering", { err: err.message });
        onLost?.();
        for (let delay = 200; !stopped && !this.closed; delay = Math.min(delay * 2, 2000)) {
          try {
            confirmed = performance.now();
            lease = this.etcd.lease(this.opts.leaseTtlSec, { autoKeepAlive: true });
            arm(lease);
            await onRenew(lease);
            return;
          } catch (e) {
            this.opts.log.warn("etcd re-register failed", { err: e });
            await Bun.sleep(delay);
          }
        }
      });
    };
    arm(lease);
    const handle = {
      current: () => lease,
      earliestExpiry: () => confirmed + ttlMs,
      close: async () => {
        stopped = true;
        this.leases.delete(handle);
        await lease.revoke().catch(() => undefined);
      },
    };
    this.leases.add(handle);
    return handle;
  }

  /**
   * Registers info under a kept lease. If the lease is lost the key is put again under a new one:
   * with the same info, or with what onLost returns (a registration that holds state keyed by its
   * id, such as connect's presence, takes a new id: logic may already be removing the old one's);
   * onRenewed runs once the key is in etcd again.
   */
  async register(service: string, info: InstanceInfo, opts: { onLost?: () => InstanceInfo; onRenewed?: () => void } = {}): Promise<Registration> {
    let key = this.serviceKey(service, info.id);
    let current = info;
    const onLost = opts.onLost;
    const lost = onLost
      ? () => {
          current = onLost();
          key = this.serviceKey(service, current.id);
        }
      : undefined;
    const renew = async (l: Lease) => {
      await l.put(key).value(JSON.stringify(current)).exec();
      opts.onRenewed?.();
    };
    const lease = this.keptLease(renew, lost);
    await lease.current().put(key).value(JSON.stringify(info)).exec();
    return {
      update: async (next) => {
        current = next;
        await lease.current().put(key).value(JSON.stringify(next)).exec();
      },
      close: () => lease.close(),
    };
  }

  /** Keeps a live map of a service's instances; onChange runs after every change (and once at start). */
  async watch(service: string, onChange?: (instances: Instances) => void): Promise<ServiceWatch> {
    const prefix = this.serviceKey(service);
    const map = new Map<string, InstanceInfo>();
    const parse = (k: string, v: string) => {
      try {
        map.set(k.slice(prefix.length), JSON.parse(v) as InstanceInfo);
      } catch {
        this.opts.log.warn("ignoring malformed registration", { key: k });
      }
    };
    const watcher: Watcher = await this.etcd.watch().prefix(prefix).create();
    watcher.on("put", (kv) => {
      parse(kv.key.toString(), kv.value.toString());
      onChange?.(map);
    });
    watcher.on("delete", (kv) => {
      map.delete(kv.key.toString().slice(prefix.length));
      onChange?.(map);
    });
    watcher.on("error", (err) => this.opts.log.warn("etcd watch error", { service, err: err.message }));
    const all = await this.etcd.getAll().prefix(prefix).strings();
    for (const [k, v] of Object.entries(all)) parse(k, v);
    onChange?.(map);
    return { instances: () => map, close: () => watcher.cancel() };
  }

  async close(): Promise<void> {
    await Promise.all([...this.leases].map((l) => l.close()));
    this.closed = true;
    this.etcd.close();
  }
}
