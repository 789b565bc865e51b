// Latency of LogicRPC and ConnectRPC per logical call. RPCs ride long-lived pipe streams
// (src/shared/rpc.ts), so gRPC's own per-call interceptors would see one call per stream: here the
// service implementation (server side) and the typed client (client side) are wrapped instead,
// one observation per method call. code is "OK" or the error catalogue's code (src/shared/errors.ts);
// the client's includes its retries and the wait for a lane, the server's only the handler. Kept
// as tallies (src/shared/tally.ts): every message passes here on each tier it crosses.
import type { Registry } from "prom-client";
import { AppError } from "./errors.ts";
import type { Api, Service } from "./rpc.ts";
import { TallyHistogram, type HistogramCell } from "./tally.ts";

const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

const codeOf = (e: unknown) => (e instanceof AppError ? e.code : "INTERNAL");

function histogram(registry: Registry, side: "server" | "client"): TallyHistogram {
  const name = `bunchat_rpc_${side}_duration_seconds`;
  // One per registry, shared by every service a role serves or calls.
  const existing: unknown = registry.getSingleMetric(name);
  if (existing instanceof TallyHistogram) return existing;
  if (existing) throw new Error(`${name} is already registered as another kind of metric`);
  const help = `Duration of one logical RPC call (${side} side), by gRPC service, method and result code`;
  return new TallyHistogram(name, help, BUCKETS, [registry], ["service", "method", "code"]);
}

/** One method's cells by result code, each made on its first observation (as prom-client shows a label set). */
function cellsOf(h: TallyHistogram, service: string, method: string): (code: string) => HistogramCell {
  const byCode = new Map<string, HistogramCell>();
  return (code) => {
    let c = byCode.get(code);
    if (!c) byCode.set(code, (c = h.child({ service, method, code })));
    return c;
  };
}

/** Runs one call, observing its duration (seconds) into the cell of its result code (OK or the error's code). */
async function timed(cell: (code: string) => HistogramCell, run: () => unknown): Promise<unknown> {
  const t0 = performance.now();
  let code = "OK";
  try {
    return await run();
  } catch (e) {
    code = codeOf(e);
    throw e;
  } finally {
    cell(code).observe((performance.now() - t0) / 1000);
  }
}

/** The implementation with every method timed into bunchat_rpc_server_duration_seconds. */
export function instrumentServer<T extends Api>(svc: Service, impl: T, registry: Registry): T {
  const h = histogram(registry, "server");
  const out: Record<string, (req: unknown) => Promise<unknown>> = {};
  for (const m of svc.methods) {
    const fn = impl[m];
    const cell = cellsOf(h, svc.name, m);
    out[m] = (req) => timed(cell, () => fn.call(impl, req));
  }
  return out as T;
}

/** The client with every method timed into bunchat_rpc_client_duration_seconds; close() passes through. */
export function instrumentClient<C extends object>(svc: Service, client: C, registry: Registry): C {
  const h = histogram(registry, "client");
  const src = client as Record<string, unknown>;
  const out: Record<string, unknown> = { ...src };
  if (typeof src.close === "function") out.close = (src.close as () => void).bind(client);
  for (const m of svc.methods) {
    const fn = src[m];
    if (typeof fn !== "function") continue;
    const cell = cellsOf(h, svc.name, m);
    out[m] = (...args: unknown[]) => timed(cell, () => fn.apply(client, args));
  }
  return out as C;
}
