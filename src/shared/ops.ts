// The internal ops endpoints of every role: /healthz (alive and serving), /readyz (the stores the
// role uses answer and its etcd registration is live; CONTRACT.md v1.1) and /metrics, on one port
// per process bound to the internal address (IM_METRICS_HOST:IM_METRICS_PORT). Public ports (api,
// connect) serve no /metrics. Each role owns its own prom-client Registry, so several instances
// can live in one process (tests) without sharing counters. No `instance` label is set here:
// Prometheus adds its own from the scrape target, which stays stable across restarts.
import { Counter, Gauge, Registry, collectDefaultMetrics } from "prom-client";
import pkg from "../../package.json" with { type: "json" };
import { AppError, errorResponse, type ErrorCode } from "./errors.ts";

export const VERSION: string = pkg.version;

/** A registry labelled role=<role>, with the process defaults and bunchat_build_info{version,role} = 1. */
export function newRegistry(role: string, defaults = true): Registry {
  const r = new Registry();
  r.setDefaultLabels({ role });
  if (defaults) collectDefaultMetrics({ register: r });
  new Gauge({ name: "bunchat_build_info", help: "Always 1; labels name the running version", labelNames: ["version"], registers: [r] }).set(
    { version: VERSION },
    1,
  );
  return r;
}

/** bunchat_<role>_errors_total{code}: errors answered or hit by this role, by the catalogue's code. */
export function errorCounter(registry: Registry, role: string): { inc(code: ErrorCode | string, by?: number): void } {
  const c = new Counter({
    name: `bunchat_${role}_errors_total`,
    help: `Errors of the ${role} role by code (src/shared/errors.ts)`,
    labelNames: ["code"],
    registers: [registry],
  });
  return { inc: (code, by = 1) => c.inc({ code }, by) };
}

/** One dependency /readyz checks: resolves when it answers, rejects (or times out) when it does not. */
export interface ReadyCheck {
  /** Named in the 503 message, e.g. "redis", "mysql", "etcd registration". */
  name: string;
  check: () => Promise<unknown>;
}

/** How long one check may take before it counts as down (probes time out at 1–3 s). */
const CHECK_TIMEOUT_MS = 1000;

/** Each check's outcome: error is why it failed (undefined when it answered). Checks run in parallel. */
export async function runChecks(checks: readonly ReadyCheck[]): Promise<{ name: string; error?: string }[]> {
  return Promise.all(
    checks.map(async ({ name, check }) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      try {
        await Promise.race([
          check(),
          new Promise((_, rej) => (timer = setTimeout(() => rej(new Error(`no answer within ${CHECK_TIMEOUT_MS} ms`)), CHECK_TIMEOUT_MS))),
        ]);
        return { name };
      } catch (e) {
        return { name, error: errText(e) };
      } finally {
        clearTimeout(timer);
      }
    }),
  );
}

/** The names of the checks that failed, with why ("redis (ECONNREFUSED)"); empty when ready. */
export async function failedChecks(checks: readonly ReadyCheck[]): Promise<string[]> {
  return (await runChecks(checks)).filter((r) => r.error !== undefined).map((r) => `${r.name} (${r.error})`);
}

/** Short and secret-free: the error's code or first line, never a URL with credentials. */
function errText(e: unknown): string {
  const err = e as { code?: unknown; message?: unknown; cause?: { code?: unknown } };
  const code = err?.code ?? err?.cause?.code;
  if (typeof code === "string" && code) return code;
  const msg = typeof err?.message === "string" ? err.message.split("\n")[0] : String(e);
  return msg.replace(/\w+:\/\/[^\s]*@/g, "…@").slice(0, 200);
}

export interface OpsState {
  registry: Registry;
  /** True while started and not stopping: /healthz. */
  live: () => boolean;
  checks: readonly ReadyCheck[];
}

/** 200 {"ready":true} or 503 with the error envelope naming what is down. */
export async function readyResponse(s: OpsState): Promise<Response> {
  if (!s.live()) return errorResponse(new AppError("UNAVAILABLE", "not ready: not started or stopping"));
  const down = await failedChecks(s.checks);
  if (down.length) return errorResponse(new AppError("UNAVAILABLE", `not ready: ${down.join(", ")}`));
  return Response.json({ ready: true });
}

export function healthResponse(live: () => boolean): Response {
  return live() ? new Response("ok\n") : new Response("starting or stopping\n", { status: 503 });
}

/** The ops HTTP server of one process: /healthz, /readyz, /metrics; 404 otherwise. Also exports bunchat_ready and bunchat_dependency_up{dependency}. */
export function serveOps(host: string, port: number, s: OpsState) {
  if (!s.registry.getSingleMetric("bunchat_ready")) {
    // One run of the checks per scrape, shared by both gauges.
    let shared: Promise<{ name: string; error?: string }[]> | undefined;
    const results = () => {
      shared ??= runChecks(s.checks).finally(() => setTimeout(() => (shared = undefined), 100));
      return shared;
    };
    new Gauge({
      name: "bunchat_ready",
      help: "1 when /readyz would answer 200 (evaluated at scrape time), else 0",
      registers: [s.registry],
      async collect() {
        this.set(s.live() && (await results()).every((r) => r.error === undefined) ? 1 : 0);
      },
    });
    new Gauge({
      name: "bunchat_dependency_up",
      help: "1 when a dependency /readyz checks answers (redis, mysql, etcd registration, ...), else 0",
      labelNames: ["dependency"],
      registers: [s.registry],
      async collect() {
        for (const r of await results()) this.set({ dependency: r.name }, r.error === undefined ? 1 : 0);
      },
    });
  }
  return Bun.serve({
    port,
    hostname: host,
    fetch: async (req) => {
      const path = new URL(req.url).pathname;
      if (path === "/healthz") return healthResponse(s.live);
      if (path === "/readyz") return readyResponse(s);
      if (path === "/metrics") return new Response(await s.registry.metrics(), { headers: { "content-type": s.registry.contentType } });
      return errorResponse(new AppError("NOT_FOUND", "no such endpoint"));
    },
  });
}

/** Resolves when <prefix>/services/<service>/<id> exists in etcd (this instance's lease is live); rejects otherwise. */
export async function registered(
  discovery: { etcd: { get(key: string): { string(): Promise<string | null> } }; serviceKey(service: string, id?: string): string },
  service: string,
  id: string,
): Promise<void> {
  const v = await discovery.etcd.get(discovery.serviceKey(service, id)).string();
  if (v === null) throw new Error("not registered");
}
