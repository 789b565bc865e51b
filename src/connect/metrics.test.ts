import { describe, expect, test } from "bun:test";
import { Registry } from "prom-client";
import { connectMetrics } from "./metrics.ts";

describe("connectMetrics", () => {
  test("connectMetrics registers the delivery histogram as a Prometheus histogram", async () => {
    const registry = new Registry();
    const m = connectMetrics(registry, { connections: () => 0, rooms: () => 0 });
    m.delivery.observe(0.003);
    const text = await registry.metrics();
    expect(text).toContain("# TYPE bunchat_connect_delivery_seconds histogram");
    expect(text).toContain('bunchat_connect_delivery_seconds_bucket{le="0.005"} 1');
    expect(text).toContain("bunchat_connect_delivery_seconds_count 1");
  });
});
