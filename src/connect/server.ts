// The connect tier: WebSocket long connections on Bun.serve (plus /healthz for load balancers on the
// same public port), a ConnectRPC server that task pushes events to, an etcd registration advertising
// the wsUrl, the connection count and readiness (api's /api/gateway picks the least-loaded ready
// instance), and the internal ops port (/healthz, /readyz, /metrics).
import type { Server as GrpcServer } from "@grpc/grpc-js";
import type { Server } from "bun";
import type { Registry } from "prom-client";
import type { Config } from "../shared/config.ts";
import type { InstanceInfo, Registration } from "../shared/discovery.ts";
import { AppError, errorResponse } from "../shared/errors.ts";
import type { Logger } from "../shared/log.ts";
import { healthResponse, newRegistry, registered, serveOps } from "../shared/ops.ts";
import { instrumentClient, instrumentServer } from "../shared/rpc-metrics.ts";
import { LogicService } from "../../proto/logic.ts";
import { CLOSE } from "../shared/protocol.ts";
import { addService, startServer, stopServer } from "../shared/rpc.ts";
import { clusterAuthFor, refusedCounter } from "../shared/cluster-auth.ts";
import { CONNECT_SERVICE, ConnectService, type ConnectApi } from "../../proto/connect.ts";
import type { Session } from "../../proto/logic.ts";
import { Conn, type Socket } from "./conn.ts";
import type { Format } from "./frames.ts";
import { FrameHandler } from "./handler.ts";
import { Hub } from "./hub.ts";
import { connectMetrics, type ConnectMetrics } from "./metrics.ts";
import { Outbox } from "./outbox.ts";
import { Upstream, type LogicPort } from "./upstream.ts";

/**
 * Bun's hard cap on a client frame. uWebSockets checks it against each frame header (and a
 * fragmented message's running total) before buffering any payload, and refuses a frame above it
 * by closing with 1009 itself (our close handler sees 1006); that code cannot be changed. Frames
 * above LIMITS.maxFrameBytes and up to this cap are read and closed by us with 4413. The cap
 * bounds what one connection can make us buffer; see README "Behaviour" for the trade-off.
 */
const MAX_PAYLOAD = 16 << 20;
/** How often the connection count in etcd is refreshed (only when it changed). */
const REGISTRATION_REFRESH_MS = 2000;
/** Bounds on stop(): etcd deregistration, then the presence cleanup of the closed sockets. */
const DEREGISTER_TIMEOUT_MS = 1000;
const CLEANUP_TIMEOUT_MS = 2000;
const GRPC_GRACE_MS = 1000;

export interface ConnectServerOptions {
  config: Readonly<Config>;
  log: Logger;
  /** LogicRPC: makeClient(LogicService, etcdTarget(discovery, "logic").target), or a fake. */
  logic: LogicPort;
  /** Where this instance registers itself: a Discovery, or a stub with register() (then /readyz checks only that it is started). */
  discovery: { register(service: string, info: InstanceInfo, opts?: { onLost?: () => InstanceInfo; onRenewed?: () => void }): Promise<Registration> } & Partial<Parameters<typeof registered>[0]>;
  instanceId: string;
}

export class ConnectServer {
  readonly registry: Registry;
  private readonly log: Logger;
  private readonly cfg: Readonly<Config>;
  private readonly metrics: ConnectMetrics;
  private readonly upstream: Upstream;
  private readonly out: Outbox;
  private readonly hub: Hub;
  private readonly handler: FrameHandler;
  private http?: Server<Conn>;
  private ops?: ReturnType<typeof serveOps>;
  private grpc?: GrpcServer;
  private rpcPort = 0;
  private registration?: Registration;
  private reportedConns = -1;
  private updating = false;
  private timers: ReturnType<typeof setInterval>[] = [];
  private connSeq = 0;
  /** Registrations lost so far: the current one's id is instanceId, then instanceId-r<n>. */
  private lostRegistrations = 0;
  /**
   * Before the first registration and between a lost one and its renewal: new sockets are refused
   * (503), since their presence would be recorded under an id not yet in etcd, which task skips as
   * dead (a balancer may send clients to the port as soon as it listens).
   */
  private unregistered = true;
  private ready = false;
  private stopping = false;
  private stopped?: Promise<void>;

  constructor(private readonly opts: ConnectServerOptions) {
    this.cfg = opts.config;
    this.log = opts.log.child({ component: "connect", instance: opts.instanceId });
    this.registry = newRegistry("connect");
    this.metrics = connectMetrics(this.registry, { connections: () => this.hub.all.size, rooms: () => this.hub.roomCount });
    this.upstream = new Upstream(instrumentClient(LogicService, opts.logic, this.registry), opts.config.sendTimeoutMs, opts.config.sendLingerMs);
    this.out = new Outbox(this.cfg.wsMaxBuffered, this.metrics, this.log);
    this.hub = new Hub((topic, data) => this.http?.publish(topic, data, false) ?? 0, this.out, this.metrics, this.log, opts.instanceId);
    this.handler = new FrameHandler({
      upstream: this.upstream,
      hub: this.hub,
      out: this.out,
      metrics: this.metrics,
      log: this.log,
      instanceId: opts.instanceId,
      maxRoomsPerConn: this.cfg.maxRoomsPerConn,
    });
  }

  /** The bound WebSocket/HTTP port (config.connectPort may be 0). */
  get port(): number {
    return this.http?.port ?? 0;
  }

  get rpcAddr(): string {
    return `${this.cfg.host}:${this.rpcPort}`;
  }

  get wsUrl(): string {
    return `ws://${this.cfg.host}:${this.port}/ws`;
  }

  /** The internal ops port (/healthz, /readyz, /metrics); config.metricsPort may be 0. */
  get metricsPort(): number {
    return this.ops?.port ?? 0;
  }

  /** The id this instance is registered under in etcd now, and records its connections' presence with. */
  get registrationId(): string {
    return this.handler.inst;
  }

  get connections(): number {
    return this.hub.all.size;
  }

  private impl?: ConnectApi;

  /** The ConnectApi implementation served over gRPC (also callable in-process by a co-located task). */
  api(): ConnectApi {
    this.impl ??= instrumentServer<ConnectApi>(
      ConnectService,
      {
        push: async (req) => {
          this.hub.apply(req.events);
          return null;
        },
      },
      this.registry,
    );
    return this.impl;
  }

  async start(): Promise<void> {
    try {
      this.http = this.serve();
      const impl = this.api();
      // Bound to the internal address only; every call must carry the cluster secret.
      const auth = { auth: clusterAuthFor(this.cfg), onRefused: refusedCounter(this.registry) };
      const rpc = await startServer((s) => addService(s, ConnectService, impl, this.log), this.cfg.host, this.cfg.connectRpcPort, auth);
      this.grpc = rpc.server;
      this.rpcPort = rpc.port;
      this.timers.push(setInterval(() => this.sweep(), this.sweepEveryMs()));
      this.ready = true;
      const conns = this.connections;
      this.registration = await this.opts.discovery.register(CONNECT_SERVICE, this.info(conns), {
        onLost: () => this.registrationLost(),
        onRenewed: () => this.registrationRenewed(),
      });
      this.reportedConns = conns;
      // Unless the lease was already lost again meanwhile: then registrationRenewed clears it.
      if (!this.lostRegistrations) this.unregistered = false;
      this.timers.push(setInterval(() => void this.refreshRegistration(), REGISTRATION_REFRESH_MS));
      const d = this.opts.discovery;
      const checks = d.etcd && d.serviceKey ? [{ name: "etcd registration", check: () => registered(d as Parameters<typeof registered>[0], CONNECT_SERVICE, this.registrationId) }] : [];
      this.ops = serveOps(this.cfg.metricsHost, this.cfg.metricsPort, { registry: this.registry, live: () => this.ready, checks });
      this.log.info("connect started", { wsUrl: this.wsUrl, rpcAddr: this.rpcAddr });
    } catch (e) {
      await this.stop();
      throw e;
    }
  }

  /**
   * Deregisters first (no new clients are sent here), closes every socket with 1012, sends their
   * presence leave/disconnect ops (bounded wait), then stops the gRPC and HTTP servers.
   */
  stop(): Promise<void> {
    return (this.stopped ??= this.shutdown());
  }

  private async shutdown(): Promise<void> {
    this.stopping = true;
    this.ready = false;
    for (const t of this.timers) clearInterval(t);
    if (this.registration) {
      const closing = this.registration.close().catch((e) => this.log.warn("deregistration failed", { err: e }));
      await within(closing, DEREGISTER_TIMEOUT_MS);
    }
    const open = this.hub.all.size;
    for (const ws of [...this.hub.all]) this.out.close(ws, CLOSE.RESTARTING, "server restarting");
    await within(Promise.all(this.handler.pending), CLEANUP_TIMEOUT_MS);
    if (this.grpc) await stopServer(this.grpc, GRPC_GRACE_MS);
    this.http?.stop(true);
    this.ops?.stop(true);
    this.log.info("connect stopped", { closed: open });
  }

  private serve(): Server<Conn> {
    const handler = this.handler;
    return Bun.serve<Conn>({
      port: this.cfg.connectPort,
      hostname: this.cfg.publicBindHost,
      fetch: (req, server) => this.fetch(req, server),
      websocket: {
        // Our own sweep does heartbeats and idle timeouts, so the contract's close codes are used.
        idleTimeout: 0,
        sendPings: false,
        maxPayloadLength: MAX_PAYLOAD,
        // The hard stop for slow readers; the sweep and Outbox close at wsMaxBuffered with 4429 first.
        backpressureLimit: this.cfg.wsMaxBuffered * 2,
        closeOnBackpressureLimit: true,
        perMessageDeflate: false,
        open: (ws) => {
          handler.open(ws);
          // Upgraded after stop() closed the others: close this one the same way.
          if (this.stopping || this.unregistered) this.out.close(ws, CLOSE.RESTARTING, "server restarting");
        },
        message: (ws, raw) => {
          // A handler bug must not end the process (Bun treats a throw here as uncaught): the
          // frame is answered INTERNAL and the connection stays open.
          try {
            handler.message(ws, raw);
          } catch (err) {
            this.log.error("frame handling failed", { conn: ws.data.no, err });
            this.out.error(ws, undefined, new AppError("INTERNAL", "internal error"));
          }
        },
        close: (ws, code) => handler.close(ws, code),
        ping: (ws) => {
          ws.data.lastSeen = Date.now();
        },
        pong: (ws) => {
          ws.data.lastSeen = Date.now();
        },
      },
    });
  }

  private async fetch(req: Request, server: Server<Conn>): Promise<Response | undefined> {
    const url = new URL(req.url);
    if (url.pathname === "/ws") return this.upgrade(req, url, server);
    // /healthz stays on the public port for load balancers; /readyz and /metrics are internal only.
    if (url.pathname === "/healthz") return healthResponse(() => this.ready);
    return errorResponse(new AppError("NOT_FOUND", "no such endpoint"));
  }

  /** Authenticates ?token= (401 if missing, invalid, expired or revoked; 503 if logic is unreachable), then upgrades. */
  private async upgrade(req: Request, url: URL, server: Server<Conn>): Promise<Response | undefined> {
    const token = url.searchParams.get("token");
    if (!token) return errorResponse(new AppError("UNAUTHENTICATED", "token required"));
    const fmt = url.searchParams.get("format") ?? "json";
    if (fmt !== "json" && fmt !== "msgpack") return errorResponse(new AppError("BAD_REQUEST", "format must be json or msgpack"));
    let s: Session;
    try {
      s = await this.upstream.auth.call(token);
    } catch (e) {
      if (e instanceof AppError) return errorResponse(e);
      this.log.error("authenticate failed", { err: e });
      return errorResponse(new AppError("INTERNAL", "internal error"));
    }
    const now = Date.now();
    if (s.exp <= now) return errorResponse(new AppError("UNAUTHENTICATED", "token expired"));
    if (this.stopping) return errorResponse(new AppError("UNAVAILABLE", "server is shutting down"));
    if (this.unregistered) return errorResponse(new AppError("UNAVAILABLE", "server is registering"));
    const conn = new Conn(++this.connSeq, { userId: s.userId, userName: s.userName }, s.sid, s.exp, fmt as Format, now);
    if (server.upgrade(req, { data: conn })) return undefined;
    return errorResponse(new AppError("BAD_REQUEST", "expected a WebSocket upgrade"));
  }

  /** Often enough for heartbeat precision, rarely enough to stay cheap with many sockets. */
  private sweepEveryMs(): number {
    return Math.max(20, Math.min(1000, this.cfg.pingIntervalMs / 2, this.cfg.idleTimeoutMs / 4));
  }

  /** One pass over all sockets: idle timeout (4408), token expiry (4401), slow readers (4429), pings. */
  private sweep(): void {
    const now = Date.now();
    const { idleTimeoutMs, pingIntervalMs } = this.cfg;
    for (const ws of this.hub.all) {
      const c = ws.data;
      if (now - c.lastSeen > idleTimeoutMs) this.out.close(ws, CLOSE.HEARTBEAT_TIMEOUT, "heartbeat timeout");
      else if (c.exp <= now) this.out.close(ws, CLOSE.TOKEN_REVOKED, "token expired");
      else if (!this.out.checkBuffered(ws) && now - c.lastPing >= pingIntervalMs) {
        c.lastPing = now;
        ws.ping();
      }
    }
  }

  /**
   * The etcd lease ended while this process lives (a stall or partition longer than the TTL, or
   * etcd lost it): to the cluster this instance was dead. Logic removes the presence and routes it
   * held, and task skipped pushes to it, so its open sockets may have missed messages, and a stale
   * reconcile may still remove what is recorded under the old id. So the instance comes back as a
   * new registration (a new id, never reused), and every socket open now is closed with 1012: the
   * contract's "reconnect and sync", which recovers what was missed. Returns what to register.
   */
  private registrationLost(): InstanceInfo {
    const id = `${this.opts.instanceId}-r${++this.lostRegistrations}`;
    const open = [...this.hub.all];
    this.log.warn("etcd registration lost: closing sockets, registering again", { id, sockets: open.length });
    this.unregistered = true;
    this.handler.inst = id;
    this.hub.instanceId = id;
    for (const ws of open) this.out.close(ws, CLOSE.RESTARTING, "server restarting");
    this.reportedConns = this.connections;
    return this.info(this.reportedConns);
  }

  private registrationRenewed(): void {
    this.unregistered = false;
    this.log.info("registered again", { id: this.registrationId });
  }

  private info(conns: number): InstanceInfo {
    return { id: this.registrationId, addr: this.rpcAddr, meta: { wsUrl: this.wsUrl, conns, ready: this.ready } };
  }

  private async refreshRegistration(): Promise<void> {
    if (this.updating || !this.registration || this.connections === this.reportedConns) return;
    this.updating = true;
    const conns = this.connections;
    try {
      await this.registration.update(this.info(conns));
      this.reportedConns = conns;
    } catch (e) {
      this.log.warn("registration refresh failed", { err: e });
    } finally {
      this.updating = false;
    }
  }
}

/** Waits for p (which must not reject), at most ms; p keeps running after a timeout. */
async function within(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<void>((res) => (timer = setTimeout(res, ms)));
  try {
    await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
