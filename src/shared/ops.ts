// /healthz and /metrics for every role. Each role owns its own prom-client Registry, so several
// instances can live in one process (tests) without sharing counters.
import { Registry, collectDefaultMetrics } from "prom-client";

export function newRegistry(role: string, instanceId: string, defaults = true): Registry {
  const r = new Registry();
  r.setDefaultLabels({ role, instance: instanceId });
  if (defaults) collectDefaultMetrics({ register: r });
  return r;
}

/** Answers /healthz and /metrics; undefined for any other path so callers can route on. */
export async function opsResponse(req: Request, registry: Registry, ready: () => boolean): Promise<Response | undefined> {
  const path = new URL(req.url).pathname;
  if (path === "/healthz") return ready() ? new Response("ok\n") : new Response("starting\n", { status: 503 });
  if (path === "/metrics") return new Response(await registry.metrics(), { headers: { "content-type": registry.contentType } });
  return undefined;
}

/** A standalone ops HTTP server, for roles without an HTTP server of their own (logic, task). */
export function serveOps(port: number, registry: Registry, ready: () => boolean) {
  return Bun.serve({
    port,
    hostname: "0.0.0.0",
    fetch: async (req) => (await opsResponse(req, registry, ready)) ?? new Response("not found\n", { status: 404 }),
  });
}
