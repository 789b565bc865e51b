import { describe, expect, test } from "bun:test";
import { Counter, Histogram, Registry } from "prom-client";
import { family, tally, TallyHistogram } from "./tally.ts";

/** Bucket bounds of the histograms compared here (the test values below sit on, between and beyond them). */
const BOUNDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** The same values into a TallyHistogram and a prom-client Histogram, each on its own registry. */
function both(values: number[], defaultLabels?: Record<string, string>) {
  const mine = new Registry();
  const theirs = new Registry();
  if (defaultLabels) {
    mine.setDefaultLabels(defaultLabels);
    theirs.setDefaultLabels(defaultLabels);
  }
  const t = new TallyHistogram("x_seconds", "help text", BOUNDS, [mine]);
  const h = new Histogram({ name: "x_seconds", help: "help text", buckets: BOUNDS, registers: [theirs] });
  for (const v of values) {
    t.observe(v);
    h.observe(v);
  }
  return { mine, theirs, t, h };
}

describe("TallyHistogram", () => {
  test("exports exactly what prom-client's Histogram exports for the same observations", async () => {
    // Bounds themselves (le is inclusive), between them, below the first, above the last, zero.
    const values = [0, 0.0005, 0.001, 0.0011, 0.0025, 0.04, 0.05, 0.3, 1, 7, 10, 11, 1e6];
    for (let i = 0; i < 200; i++) values.push((i * 37) % 1000 / 300);
    const { mine, theirs } = both(values, { instance: "c1" });
    expect(await mine.metrics()).toBe(await theirs.metrics());
    // The JSON form too (with prom-client's exemplar: null on each bucket; exemplars are off).
    expect(await mine.getMetricsAsJSON()).toEqual(await theirs.getMetricsAsJSON());
  });

  test("zeros before the first observation; after a reset, nothing until observed again, as prom-client", async () => {
    const { mine, theirs, t, h } = both([]);
    expect(await mine.metrics()).toBe(await theirs.metrics());
    expect(await mine.metrics()).toContain("x_seconds_count 0");
    t.observe(0.002);
    h.observe(0.002);
    expect(await mine.metrics()).toBe(await theirs.metrics());
    expect(await mine.metrics()).toContain('x_seconds_bucket{le="0.0025"} 1');
    mine.resetMetrics();
    theirs.resetMetrics();
    expect(await mine.metrics()).toBe(await theirs.metrics());
    expect(await mine.metrics()).not.toContain("x_seconds_count");
    t.observe(3);
    h.observe(3);
    expect(await mine.metrics()).toBe(await theirs.metrics());
    expect(await mine.metrics()).toContain("x_seconds_count 1");
  });

  test("a non-finite value is not counted", async () => {
    const registry = new Registry();
    const t = new TallyHistogram("x_seconds", "help text", BOUNDS, [registry]);
    for (const v of [NaN, Infinity, -Infinity, 0.5]) t.observe(v);
    const text = await registry.metrics();
    expect(text).toContain("x_seconds_count 1");
    expect(text).toContain("x_seconds_sum 0.5");
  });

  test("with labels: exports exactly what prom-client's labelled Histogram exports, also after a reset", async () => {
    const mine = new Registry();
    const theirs = new Registry();
    for (const r of [mine, theirs]) r.setDefaultLabels({ instance: "l1" });
    const names = ["service", "method", "code"] as const;
    const t = new TallyHistogram("y_seconds", "help text", BOUNDS, [mine], names);
    const h = new Histogram({ name: "y_seconds", help: "help text", buckets: BOUNDS, labelNames: names, registers: [theirs] });
    const same = async () => {
      expect(await mine.metrics()).toBe(await theirs.metrics());
      expect(await mine.getMetricsAsJSON()).toEqual(await theirs.getMetricsAsJSON());
    };
    await same(); // no label set observed yet: nothing but HELP and TYPE
    const sets = [
      { service: "Logic", method: "send", code: "OK" },
      { service: "Logic", method: "send", code: "RATE_LIMITED" },
      { service: "Logic", method: "history", code: "OK" },
    ];
    for (let i = 0; i < 300; i++) {
      const labels = sets[i % 7 === 0 ? 1 : i % 3 === 0 ? 2 : 0];
      const v = ((i * 37) % 1000) / 3000;
      t.child(labels).observe(v);
      h.observe(labels, v);
    }
    await same();
    expect(await mine.metrics()).toContain('y_seconds_count{instance="l1",service="Logic",method="send",code="RATE_LIMITED"} 43');
    mine.resetMetrics();
    theirs.resetMetrics();
    await same(); // emptied
    // Label sets come back in the order they are observed again, not the order they were made.
    for (const i of [2, 0]) {
      t.child(sets[i]).observe(0.01);
      h.observe(sets[i], 0.01);
    }
    await same();
    expect((await mine.metrics()).indexOf('method="history"')).toBeLessThan((await mine.metrics()).indexOf('method="send"'));
    expect(() => t.observe(1)).toThrow("has labels");
    expect(() => t.child({ service: "Logic", method: "send" })).toThrow("label code must be a string");
    expect(() => new TallyHistogram("z_seconds", "z", BOUNDS, []).child({ a: "b" })).toThrow("has no labels");
  });

  test("family() and tally() export what prom-client's Counters export for the same counts", async () => {
    const mine = new Registry();
    const theirs = new Registry();
    const f = family([mine], "x_total", "help text", "result");
    const t = tally([mine], "y_total", "help text");
    const fc = new Counter({ name: "x_total", help: "help text", labelNames: ["result"], registers: [theirs] });
    const tc = new Counter({ name: "y_total", help: "help text", registers: [theirs] });
    for (const [r, n] of [["ok", 3], ["failed", 1], ["ok", 2]] as const) {
      f.child(r).inc(n);
      fc.inc({ result: r }, n);
    }
    t.inc();
    tc.inc();
    expect(await mine.metrics()).toBe(await theirs.metrics());
    // A second scrape hands over only what was counted since the first.
    f.child("ok").inc();
    fc.inc({ result: "ok" });
    expect(await mine.metrics()).toBe(await theirs.metrics());
  });
});
