// gRPC plumbing shared by LogicRPC and ConnectRPC: msgpack-encoded unary methods whose replies
// carry either {ok: value} or {err: {code, message}}, so AppErrors cross tiers unchanged.
import * as grpc from "@grpc/grpc-js";
import { AppError, fromGrpc, fromWire, type WireError } from "./errors.ts";
import { pack, unpack } from "./codec.ts";
import type { Logger } from "./log.ts";

type Reply<T> = { ok: T; err?: undefined } | { ok?: undefined; err: WireError };

/** A service contract: method name → async handler. Implementations and clients share the type. */
export type Api = Record<string, (req: any) => Promise<any>>;

export function serviceDefinition(name: string, methods: readonly string[]): grpc.ServiceDefinition {
  const def: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const m of methods) {
    def[m] = {
      path: `/${name}/${m}`,
      requestStream: false,
      responseStream: false,
      requestSerialize: pack,
      requestDeserialize: (b: Buffer) => unpack(b),
      responseSerialize: pack,
      responseDeserialize: (b: Buffer) => unpack(b),
      originalName: m,
    };
  }
  return def as grpc.ServiceDefinition;
}

/** Turns a thrown error into a reply; unknown errors are logged once and answered INTERNAL. */
export function toWire(err: unknown, log: Logger, context: Record<string, unknown>): WireError {
  if (err instanceof AppError) return err.toJSON();
  log.error("unhandled error", { ...context, err });
  return { code: "INTERNAL", message: "internal error" };
}

export function addService<T extends Api>(server: grpc.Server, def: grpc.ServiceDefinition, impl: T, log: Logger): void {
  const handlers: grpc.UntypedServiceImplementation = {};
  for (const m of Object.keys(def)) {
    const fn = impl[m];
    if (typeof fn !== "function") throw new Error(`service method ${m} not implemented`);
    handlers[m] = (call: grpc.ServerUnaryCall<unknown, Reply<unknown>>, cb: grpc.sendUnaryData<Reply<unknown>>) => {
      fn.call(impl, call.request).then(
        (ok: unknown) => cb(null, { ok: ok ?? null }),
        (e: unknown) => cb(null, { err: toWire(e, log, { method: m }) }),
      );
    };
  }
  server.addService(def, handlers);
}

export async function startServer(
  build: (s: grpc.Server) => void,
  host: string,
  port: number,
): Promise<{ server: grpc.Server; port: number }> {
  const server = new grpc.Server({ "grpc.max_receive_message_length": 64 << 20 });
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

/** A typed client; `target` is "host:port" or an etcd:// target from etcdTarget(). */
export function makeClient<T extends Api>(def: grpc.ServiceDefinition, target: string, defaultDeadlineMs = 5000): Client<T> {
  const Ctor = grpc.makeGenericClientConstructor(def, "svc");
  const raw = new Ctor(target, grpc.credentials.createInsecure(), CHANNEL_OPTIONS) as unknown as Record<
    string,
    (req: unknown, md: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r?: Reply<unknown>) => void) => void
  > & { close(): void };
  const client: Record<string, unknown> = { close: () => raw.close() };
  for (const m of Object.keys(def)) {
    client[m] = async (req: unknown, opts: CallOpts = {}) => {
      for (let attempt = 0; ; attempt++) {
        try {
          const reply = await new Promise<Reply<unknown>>((res, rej) =>
            raw[m](req, new grpc.Metadata(), { deadline: Date.now() + (opts.deadlineMs ?? defaultDeadlineMs) }, (e, r) =>
              e ? rej(e) : res(r as Reply<unknown>),
            ),
          );
          if (reply.err) throw fromWire(reply.err);
          return reply.ok;
        } catch (e) {
          const err = fromGrpc(e);
          if (err.code !== "UNAVAILABLE" || attempt >= (opts.retries ?? 0)) throw err;
          await Bun.sleep(50 * (attempt + 1));
        }
      }
    };
  }
  return client as Client<T>;
}
