// The push group: routes each batch of stream events to the connect instances that hold their
// recipients and delivers them through ConnectRPC. The batch is acked only after every delivery
// resolved. Instances missing from discovery are dead and skipped; a live instance that fails is
// retried for a while, then the batch stays pending and the consumer retries it with backoff. An
// instance that keeps failing for giveUpMs (registered but broken) is given up on for that batch,
// so one bad instance cannot stall a partition forever.
//
// Room routes (room → connect instances) are cached for ROUTE_TTL_MS (10 s), which saves a Redis
// round trip per batch. A cached route can only miss an instance that joined the room later, and such a
// join appends a route event ("r") to this same stream (scripts.ts, JOIN) before any message after
// it: reading that event drops the entry, so the batch that holds it and every later one look the
// room up afresh. An instance that left stays in the entry until it expires, and gets pushes it
// ignores meanwhile. User routes (direct messages, kicks) are looked up every time.
import type { Redis } from "ioredis";
import type { PushEvent } from "../../proto/connect.ts";
import type { Keys } from "../shared/keys.ts";
import type { Logger } from "../shared/log.ts";
import { decodeEvent } from "../shared/stream.ts";
import { compareIds, sleep, type StreamEntry } from "./consumer.ts";
import type { TaskMetrics } from "./metrics.ts";
import { routeOf, type Route } from "./route.ts";
import type { ConnectSenders } from "./senders.ts";

export interface PushOptions {
  redis: Redis;
  keys: Keys;
  senders: ConnectSenders;
  metrics: TaskMetrics;
  log: Logger;
  /**
   * How long one handling of a batch keeps retrying a failing live instance, in ms (default 8 s),
   * re-checking discovery before every attempt (100 ms doubling to 500 ms apart). A crashed
   * instance leaves discovery within the lease TTL (5 s by default), so it is skipped and the
   * partition moves on within about that, without the consumer's longer backoff adding to it.
   */
  retryWindowMs?: number;
  /** How long a batch may keep failing at one live instance before it is dropped for it (default 30 s). */
  giveUpMs?: number;
}

/**
 * How long a room's route is reused (see the top of this file): joins are seen through route
 * events at once, so this only bounds how long an instance that left keeps getting pushes it
 * ignores. 10 s rather than 2: a lookup per room every 2 s was 0.05 HKEYS round trips per message
 * at 1,000 msgs/s in 100 rooms (bench/task-steady.ts).
 */
const ROUTE_TTL_MS = 10_000;

interface Outgoing {
  events: PushEvent[];
  /** Stream id of the last entry in events. */
  lastId: string;
}

/** One per partition: it remembers what a failed batch already delivered, so the retry skips it. */
export class PushHandler {
  /** instance → last entry id it received from a batch that then failed elsewhere. */
  private readonly delivered = new Map<string, string>();
  private failing?: { firstId: string; since: number };
  /** roomInstances key → its instances, and when they were read. */
  private readonly routes = new Map<string, { instances: string[]; at: number }>();
  private readonly roomRoutePrefix: string;

  constructor(private readonly o: PushOptions) {
    this.roomRoutePrefix = o.keys.roomInstances("");
  }

  readonly handle = async (entries: StreamEntry[], signal: AbortSignal): Promise<void> => {
    const { metrics } = this.o;
    const t0 = performance.now();
    metrics.pushBatch.observe(entries.length);
    const routed = this.decode(entries);
    const targets = await this.lookup(routed);
    const t1 = performance.now();
    const out = new Map<string, Outgoing>();
    for (const { id, route } of routed) {
      const instances = new Set(route.lookups.flatMap((k) => targets.get(k) ?? []));
      for (const inst of instances) {
        const done = this.delivered.get(inst);
        if (done && compareIds(id, done) <= 0) continue;
        const o = out.get(inst) ?? { events: [], lastId: id };
        o.events.push(route.event);
        o.lastId = id;
        out.set(inst, o);
      }
    }
    const t2 = performance.now();
    await this.deliver(out, entries[0].id, signal);
    const t3 = performance.now();
    this.delivered.clear();
    this.failing = undefined;
    const now = Date.now();
    const byType = { m: 0, p: 0, k: 0, rd: 0, ty: 0 };
    for (const { route } of routed) {
      byType[route.event.t]++;
      if (route.event.t === "m") metrics.lag.observe(Math.max(0, now - route.event.msg.ts) / 1000);
    }
    for (const [type, n] of Object.entries(byType)) if (n) metrics.eventsPushed.child(type).inc(n);
    this.o.log.debug("push batch delivered", {
      entries: entries.length,
      instances: out.size,
      lookupMs: Math.round(t1 - t0),
      deliverMs: Math.round(t3 - t2),
    });
  };

  private decode(entries: StreamEntry[]): { id: string; route: Route }[] {
    const routed: { id: string; route: Route }[] = [];
    for (const e of entries) {
      let route: Route | null = null;
      try {
        const ev = decodeEvent(e.d, e.n);
        if (ev.t === "r") {
          this.routes.delete(this.o.keys.roomInstances(ev.room));
          continue;
        }
        route = routeOf(ev, this.o.keys);
      } catch (err) {
        this.o.log.warn("dropping undecodable stream entry", { id: e.id, err });
        continue;
      }
      if (route) routed.push({ id: e.id, route });
      else this.o.log.debug("stream entry goes nowhere (malformed conversation, stale typing)", { id: e.id });
    }
    return routed;
  }

  /** The instances of every routing hash the batch needs: cached room routes, the rest by HKEYS in one round trip. */
  private async lookup(routed: { route: Route }[]): Promise<Map<string, string[]>> {
    const targets = new Map<string, string[]>();
    const missing: string[] = [];
    const now = Date.now();
    for (const { route } of routed) {
      for (const k of route.lookups) {
        if (targets.has(k)) continue;
        const hit = this.routes.get(k);
        if (hit && now - hit.at < ROUTE_TTL_MS) targets.set(k, hit.instances);
        else if (!missing.includes(k)) missing.push(k);
      }
    }
    if (!missing.length) return targets;
    if (this.routes.size > 10_000) for (const [k, v] of this.routes) if (now - v.at >= ROUTE_TTL_MS) this.routes.delete(k);
    const pipe = this.o.redis.pipeline();
    for (const k of missing) pipe.hkeys(k);
    const res = await pipe.exec();
    if (!res) throw new Error("routing lookup pipeline aborted");
    missing.forEach((k, i) => {
      const [err, val] = res[i];
      if (err) throw err;
      const instances = val as string[];
      targets.set(k, instances);
      if (k.startsWith(this.roomRoutePrefix)) this.routes.set(k, { instances, at: now });
    });
    return targets;
  }

  private async deliver(out: Map<string, Outgoing>, firstId: string, signal: AbortSignal): Promise<void> {
    const { senders, metrics, log } = this.o;
    const until = Date.now() + (this.o.retryWindowMs ?? 8_000);
    let pending = [...out.keys()];
    let lastErr: unknown;
    for (let attempt = 1; ; attempt++) {
      const retry = await Promise.all(
        pending.map(async (inst) => {
          const o = out.get(inst)!;
          if (!senders.isLive(inst)) {
            metrics.deliveries.child("skipped").inc(o.events.length);
            log.debug("skipping connect instance not in discovery", { instance: inst, events: o.events.length });
            return false;
          }
          try {
            await senders.send(inst, o.events);
            metrics.deliveries.child("ok").inc(o.events.length);
            this.delivered.set(inst, o.lastId);
            return false;
          } catch (err) {
            lastErr = err;
            return true;
          }
        }),
      );
      pending = pending.filter((_, i) => retry[i]);
      if (!pending.length) return;
      if (Date.now() >= until || signal.aborted) break;
      await sleep(Math.min(100 * 2 ** (attempt - 1), 500), signal);
    }
    if (this.failing?.firstId !== firstId) this.failing = { firstId, since: Date.now() };
    if (Date.now() - this.failing.since < (this.o.giveUpMs ?? 30_000)) {
      throw new Error(`push to ${pending.length} connect instance(s) failed: ${(lastErr as Error)?.message}`, { cause: lastErr });
    }
    for (const inst of pending) {
      const n = out.get(inst)!.events.length;
      metrics.deliveries.child("failed").inc(n);
      log.error("giving up pushing a batch to a failing connect instance", { instance: inst, events: n, err: lastErr });
    }
  }
}
