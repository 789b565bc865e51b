// gRPC plumbing shared by LogicRPC and ConnectRPC. Every service is carried by one bidirectional
// streaming method, "pipe": the client writes {n, m: method, req} frames, the server answers each
// with {n, ok} or {n, err: {code, message}} (so AppErrors cross tiers unchanged), in any order.
// Why not one unary call per method call: grpc-js on Bun costs ~0.3 ms of CPU per unary call on
// each side, a frame on an open stream ~0.08 ms (measured here, see bench/README.md), and the hot
// paths (send, push) make hundreds of calls a second per peer. A client keeps a few streams
// ("lanes") open and spreads calls over them; each lane is re-opened every few seconds, so the
// round-robin balancer spreads lanes over the instances the resolver knows, new ones included.
import * as grpc from "@grpc/grpc-js";
import { AppError, fromGrpc, fromWire, type WireError } from "./errors.ts";
import { pack, unpack } from "./codec.ts";
import type { Logger } from "./log.ts";
import { SECRET_METADATA_KEY, type ClusterAuth } from "./cluster-auth.ts";

type Reply<T> = { ok: T; err?: undefined } | { ok?: undefined; err: WireError };
interface CallFrame {
  n: number;
  m: string;
  req: unknown;
}
type ReplyFrame = { n: number } & Reply<unknown>;

/** A service contract: method name → async handler. Implementations and clients share the type. */
export type Api = Record<string, (req: any) => Promise<any>>;

export interface Service {
  name: string;
  methods: readonly string[];
  def: grpc.ServiceDefinition;
}

export function serviceDefinition(name: string, methods: readonly string[]): Service {
  const pipe: grpc.MethodDefinition<unknown, unknown> = {
    path: `/${name}/pipe`,
    requestStream: true,
    responseStream: true,
    requestSerialize: pack,
    requestDeserialize: (b: Buffer) => unpack(b),
    responseSerialize: pack,
    responseDeserialize: (b: Buffer) => unpack(b),
    originalName: "pipe",
  };
  return { name, methods, def: { pipe } as grpc.ServiceDefinition };
}

/** Turns a thrown error into a reply; unknown errors are logged once and answered INTERNAL. */
export function toWire(err: unknown, log: Logger, context: Record<string, unknown>): WireError {
  if (err instanceof AppError) return err.retryAfterSec ? { ...err.toJSON(), retryAfterSec: err.retryAfterSec } : err.toJSON();
  log.error("unhandled error", { ...context, err });
  return { code: "INTERNAL", message: "internal error" };
}

/** Per server: how to end each open pipe once its calls in flight are answered (run by stopServer). */
const pipeClosers = new WeakMap<grpc.Server, Set<() => void>>();

export function addService<T extends Api>(server: grpc.Server, svc: Service, impl: T, log: Logger): void {
  for (const m of svc.methods) if (typeof impl[m] !== "function") throw new Error(`service method ${m} not implemented`);
  const methods = new Set<unknown>(svc.methods);
  const closers = pipeClosers.get(server) ?? new Set();
  pipeClosers.set(server, closers);
  const pipe = (call: grpc.ServerDuplexStream<CallFrame, ReplyFrame>) => {
    let inFlight = 0;
    let closing = false;
    let done = false;
    const finish = () => {
      if (done || !closing || inFlight) return;
      done = true;
      closers.delete(close);
      call.end();
    };
    const close = () => {
      closing = true;
      finish();
    };
    closers.add(close);
    call.on("data", (f: CallFrame) => {
      // Ended (stopping) or cancelled: a frame that crossed our end is not run; the client's lane
      // sees the end and fails the call at once, so the caller retries elsewhere.
      if (done) return;
      // A frame that is not {n, m, req} is dropped: nothing here may throw on what a peer sends.
      if (typeof f !== "object" || f === null) return;
      const { n, m } = f;
      if (!methods.has(m)) {
        reply(call, { n, err: { code: "BAD_REQUEST", message: "unknown method" } }, log);
        return;
      }
      inFlight++;
      // new Promise: a method that throws synchronously is answered like one that rejects.
      new Promise((res) => res(impl[m].call(impl, f.req)))
        .then(
          (ok: unknown): ReplyFrame => ({ n, ok: ok ?? null }),
          (e: unknown): ReplyFrame => ({ n, err: toWire(e, log, { method: m }) }),
        )
        .then((r) => {
          inFlight--;
          if (!done) reply(call, r, log);
          finish();
        });
    });
    // The client half-closed (it retires the lane): answer what is in flight, then end.
    call.on("end", close);
    // Cancelled or reset: nobody is left to answer.
    const gone = () => {
      done = true;
      closers.delete(close);
    };
    call.on("error", gone);
    call.on("cancelled", gone);
  };
  server.addService(svc.def, { pipe } as grpc.UntypedServiceImplementation);
}

/**
 * Writes a reply frame; one that cannot be encoded (grpc-js serializes inside write) is answered
 * INTERNAL instead of throwing, so no reply can leave a rejection unhandled.
 */
function reply(call: grpc.ServerDuplexStream<CallFrame, ReplyFrame>, r: ReplyFrame, log: Logger): void {
  try {
    call.write(r);
  } catch (err) {
    log.error("rpc reply could not be encoded", { err });
    try {
      call.write({ n: r.n, err: { code: "INTERNAL", message: "reply could not be encoded" } });
    } catch {
      // The stream itself is gone.
    }
  }
}

export interface ServerAuth {
  auth: ClusterAuth;
  /** Called once per refused call (no or wrong secret), with the gRPC path; counts it in a metric. */
  onRefused?: (path: string) => void;
}

/**
 * A server interceptor that ends every call without the cluster secret with UNAUTHENTICATED
 * before its handler starts: the handler is never called, so no frame of such a stream runs
 * (messages and half-close that still arrive are dropped here). Covers every method of every
 * service on the server, unary or streaming.
 */
function authInterceptor({ auth, onRefused }: ServerAuth): grpc.ServerInterceptor {
  return (desc, call) => {
    let refused = false;
    return new grpc.ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveMetadata: (md, pass) => {
            if (auth.verify(md)) return pass(md);
            refused = true;
            onRefused?.(desc.path);
            call.sendStatus({ code: grpc.status.UNAUTHENTICATED, details: "missing or wrong cluster credentials", metadata: null });
          },
          onReceiveMessage: (msg, pass) => {
            if (!refused) pass(msg);
          },
          onReceiveHalfClose: (pass) => {
            if (!refused) pass();
          },
        }),
    });
  };
}

/**
 * Binds a gRPC server on host:port (port 0: any). With `auth`, every call must carry the cluster
 * secret (see authInterceptor); without it the server is open, which only tests use.
 */
export async function startServer(
  build: (s: grpc.Server) => void,
  host: string,
  port: number,
  auth?: ServerAuth,
): Promise<{ server: grpc.Server; port: number }> {
  const server = new grpc.Server({ "grpc.max_receive_message_length": 64 << 20, interceptors: auth ? [authInterceptor(auth)] : [] });
  build(server);
  const bound = await new Promise<number>((res, rej) =>
    server.bindAsync(`${host}:${port}`, grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))),
  );
  return { server, port: bound };
}

export function stopServer(server: grpc.Server, graceMs = 5000): Promise<void> {
  return new Promise((res) => {
    const t = setTimeout(() => {
      server.forceShutdown();
      res();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(t);
      res();
    });
    for (const close of [...(pipeClosers.get(server) ?? [])]) close();
  });
}

export interface CallOpts {
  deadlineMs?: number;
  /** Extra attempts on UNAVAILABLE (only for calls safe to repeat). */
  retries?: number;
}

export type Client<T extends Api> = { [K in keyof T]: (req: Parameters<T[K]>[0], opts?: CallOpts) => ReturnType<T[K]> } & {
  close(): void;
};

const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  "grpc.service_config": JSON.stringify({ loadBalancingConfig: [{ round_robin: {} }] }),
  "grpc.max_receive_message_length": 64 << 20,
  "grpc.keepalive_time_ms": 10_000,
  "grpc.keepalive_timeout_ms": 5_000,
  "grpc.initial_reconnect_backoff_ms": 200,
  "grpc.max_reconnect_backoff_ms": 2_000,
};

/** Lanes (open streams) per client, and how long a lane is used before it is re-opened. */
const LANES = 4;
const LANE_REOPEN_MS = 5000;
const DEADLINE_CHECK_MS = 100;

/** One open pipe stream and the calls waiting for their replies on it. */
class Lane {
  readonly openedAt = Date.now();
  broken = false;
  private retiring = false;
  private n = 0;
  /** In call order, so the first is the oldest. */
  private readonly waiting = new Map<number, { res: (v: unknown) => void; rej: (e: unknown) => void; until: number }>();

  constructor(private readonly call: grpc.ClientDuplexStream<CallFrame, ReplyFrame>) {
    call.on("data", (f: ReplyFrame) => {
      const w = typeof f === "object" && f !== null ? this.waiting.get(f.n) : undefined;
      if (!w) return;
      this.waiting.delete(f.n);
      if (f.err) w.rej(fromWire(f.err));
      else w.res(f.ok);
      if (this.retiring && !this.waiting.size) call.end();
    });
    // A server refusing our cluster credentials is a deployment fault, not the end user's: it must
    // not reach a client as 401 "wrong password", so it becomes INTERNAL (logged by the edges).
    call.on("error", (e: grpc.ServiceError) =>
      this.fail(e.code === grpc.status.UNAUTHENTICATED ? new AppError("INTERNAL", "internal call refused: cluster credentials do not match") : fromGrpc(e)),
    );
    call.on("end", () => this.fail(new AppError("UNAVAILABLE", "service temporarily unavailable")));
  }

  request(m: string, req: unknown, deadlineMs: number): Promise<unknown> {
    return new Promise((res, rej) => {
      const n = ++this.n;
      this.waiting.set(n, { res, rej, until: Date.now() + deadlineMs });
      this.call.write({ n, m, req });
    });
  }

  /**
   * Run every DEADLINE_CHECK_MS: a lane whose oldest call is past its deadline is stuck (peer hung,
   * or never connected). It is dropped with everything waiting on it, so nothing queued there is
   * sent later. (One sweep instead of a timer per call: timers cost more than the call here.)
   */
  checkDeadlines(now: number): void {
    let expired = false;
    for (const w of this.waiting.values()) if (w.until <= now) expired = true;
    if (!expired) return;
    this.fail(new AppError("UNAVAILABLE", "deadline exceeded"));
    this.call.cancel();
  }

  /** Takes no new calls; ends the stream once the waiting ones are answered. */
  retire(): void {
    this.retiring = true;
    if (!this.waiting.size) this.call.end();
  }

  cancel(): void {
    this.fail(new AppError("UNAVAILABLE", "client closed"));
    this.call.cancel();
  }

  private fail(err: AppError): void {
    this.broken = true;
    for (const w of this.waiting.values()) w.rej(err);
    this.waiting.clear();
  }
}

/**
 * A typed client; `target` is "host:port" or an etcd:// target from etcdTarget(). With `auth`,
 * every stream it opens carries the cluster secret (its first one) in the call metadata.
 */
export function makeClient<T extends Api>(svc: Service, target: string, defaultDeadlineMs = 5000, auth?: ClusterAuth): Client<T> {
  const Ctor = grpc.makeGenericClientConstructor(svc.def, "svc");
  const raw = new Ctor(target, grpc.credentials.createInsecure(), CHANNEL_OPTIONS) as unknown as {
    pipe(md: grpc.Metadata): grpc.ClientDuplexStream<CallFrame, ReplyFrame>;
    close(): void;
  };
  const md = new grpc.Metadata();
  if (auth?.outgoing) md.set(SECRET_METADATA_KEY, auth.outgoing);
  const lanes: (Lane | undefined)[] = new Array(LANES);
  let next = 0;
  const lane = (): Lane => {
    const i = next++ % LANES;
    let l = lanes[i];
    if (!l || l.broken || Date.now() - l.openedAt > LANE_REOPEN_MS) {
      l?.retire();
      l = lanes[i] = new Lane(raw.pipe(md.clone()));
    }
    return l;
  };
  const sweep = setInterval(() => {
    const now = Date.now();
    for (const l of lanes) l?.checkDeadlines(now);
  }, DEADLINE_CHECK_MS);
  sweep.unref();
  const client: Record<string, unknown> = {
    close: () => {
      clearInterval(sweep);
      for (const l of lanes) l?.cancel();
      raw.close();
    },
  };
  for (const m of svc.methods) {
    client[m] = (req: unknown, opts: CallOpts = {}) =>
      retrying(async () => {
        try {
          return await lane().request(m, req, opts.deadlineMs ?? defaultDeadlineMs);
        } catch (e) {
          throw fromGrpc(e);
        }
      }, opts.retries ?? 0);
  }
  return client as Client<T>;
}

/**
 * Runs call(), and again while it fails UNAVAILABLE, at most `retries` more times (50, 100, … ms
 * apart): the retry rule of makeClient and localClient. Any other error ends it at once.
 */
async function retrying(call: () => Promise<unknown>, retries: number): Promise<unknown> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await call();
    } catch (e) {
      if (!(e instanceof AppError) || e.code !== "UNAVAILABLE" || attempt >= retries) throw e;
      await Bun.sleep(50 * (attempt + 1));
    }
  }
}

/**
 * A Client<T> for a service implemented in this process (a co-located role, see src/bin/node.ts):
 * the same interface and error semantics as makeClient's without gRPC, serialization or the
 * cluster secret (the call never leaves the process). Requests and replies are passed by reference,
 * so neither side may mutate what it handed over (no tier does). As over gRPC: an AppError reaches
 * the caller unchanged; any other error is logged and becomes INTERNAL "internal error"; an
 * undefined result arrives as null; a call not answered within its deadline (ms; default
 * `defaultDeadlineMs`, checked every DEADLINE_CHECK_MS) fails UNAVAILABLE "deadline exceeded"
 * (its handler keeps running, as a server's does); after close() calls fail UNAVAILABLE; opts.retries
 * repeats a call that failed UNAVAILABLE.
 */
export function localClient<T extends Api>(svc: Service, impl: T, log: Logger, defaultDeadlineMs = 5000): Client<T> {
  for (const m of svc.methods) if (typeof impl[m] !== "function") throw new Error(`service method ${m} not implemented`);
  let closed = false;
  const waiting = new Set<{ rej: (e: unknown) => void; until: number }>();
  const sweep = setInterval(() => {
    const now = Date.now();
    for (const w of waiting) if (w.until <= now) w.rej(new AppError("UNAVAILABLE", "deadline exceeded"));
  }, DEADLINE_CHECK_MS);
  sweep.unref();
  const once = (m: string, req: unknown, deadlineMs: number): Promise<unknown> => {
    if (closed) return Promise.reject(new AppError("UNAVAILABLE", "client closed"));
    return new Promise((res, rej) => {
      const w = { rej, until: Date.now() + deadlineMs };
      waiting.add(w);
      // new Promise: a method that throws synchronously is answered like one that rejects.
      new Promise((r) => r(impl[m].call(impl, req))).then(
        (ok) => {
          waiting.delete(w);
          res(ok ?? null);
        },
        (e: unknown) => {
          waiting.delete(w);
          rej(e instanceof AppError ? e : fromWire(toWire(e, log, { method: m })));
        },
      );
    });
  };
  const client: Record<string, unknown> = {
    close: () => {
      closed = true;
      clearInterval(sweep);
      for (const w of waiting) w.rej(new AppError("UNAVAILABLE", "client closed"));
      waiting.clear();
    },
  };
  for (const m of svc.methods) {
    client[m] = (req: unknown, opts: CallOpts = {}) => retrying(() => once(m, req, opts.deadlineMs ?? defaultDeadlineMs), opts.retries ?? 0);
  }
  return client as Client<T>;
}
