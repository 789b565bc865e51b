import { expect, test } from "bun:test";
import { Registry } from "prom-client";
import { AppError } from "./errors.ts";
import { instrumentClient, instrumentServer } from "./rpc-metrics.ts";
import { serviceDefinition } from "./rpc.ts";

const svc = serviceDefinition("test.Svc", ["ok", "bad"]);

async function counts(r: Registry, side: string): Promise<Record<string, number>> {
  const m = await r.getSingleMetric(`bunchat_rpc_${side}_duration_seconds`)!.get();
  return Object.fromEntries(
    m.values.filter((v) => (v as { metricName?: string }).metricName?.endsWith("_count")).map((v) => [`${v.labels.service}.${v.labels.method}.${v.labels.code}`, v.value]),
  );
}

test("one observation per logical call, by service, method and result code", async () => {
  const r = new Registry();
  const impl = instrumentServer(svc, { ok: async (x: number) => x + 1, bad: async (_: unknown) => Promise.reject(new AppError("RATE_LIMITED", "slow down")) }, r);
  let closed = false;
  const client = instrumentClient(svc, { ok: impl.ok, bad: impl.bad, close: () => (closed = true) }, r);
  expect(await client.ok(1)).toBe(2);
  expect(await client.ok(2)).toBe(3);
  await expect(client.bad(0)).rejects.toThrow("slow down");
  await expect(instrumentClient(svc, { ok: async (_: unknown) => Promise.reject(new Error("boom")) }, r).ok(0)).rejects.toThrow("boom");
  client.close();
  expect(closed).toBe(true);
  expect(await counts(r, "server")).toEqual({ "test.Svc.ok.OK": 2, "test.Svc.bad.RATE_LIMITED": 1 });
  expect(await counts(r, "client")).toEqual({ "test.Svc.ok.OK": 2, "test.Svc.bad.RATE_LIMITED": 1, "test.Svc.ok.INTERNAL": 1 });
});
