// The bench's result plumbing: step lines parsed from JSON lines, SVG rendering, Redis per-message deltas.
import { describe, expect, test } from "bun:test";
import { redisPerMessage } from "./lib.ts";
import { cpuSpec, latencySpec, stepLines, toSvg } from "./plot.ts";

const line = (target: string, step: number | "warmup", rate: number, p99: number, extra: object = {}) =>
  JSON.stringify({ target, step, targetRate: rate, acceptedPerSec: rate, latencyMs: { p50: 1, p90: 2, p99, p999: p99 * 2 }, ...extra });

describe("stepLines", () => {
  test("keeps measured steps, drops warm-ups, setup, ratio and summary lines", () => {
    const text = [
      JSON.stringify({ event: "setup", target: "bunchat" }),
      line("baseline", "warmup", 1000, 3),
      line("baseline", 1, 1000, 4),
      JSON.stringify({ target: "bunchat", step: 1, targetRate: 1000, ratio: { p99: 2 } }),
      line("bunchat", 1, 1000, 30),
      JSON.stringify({ event: "summary" }),
      "not json, e.g. a stray log line",
    ].join("\n");
    expect(stepLines(text).map((r) => [r.target, r.step])).toEqual([
      ["baseline", 1],
      ["bunchat", 1],
    ]);
  });
});

describe("plots", () => {
  test("latency and CPU plots render to SVG naming every target and process", async () => {
    const rows = stepLines(
      [
        line("baseline", 1, 1000, 4, { cpuUsPerMsg: { "baseline-pubsub": 40 } }),
        line("socketio", 1, 1000, 90, { cpuPct: { "socketio-server": [30, 20], "redis-server": [5], bench: [9] } }),
      ].join("\n"),
    );
    const lat = await toSvg(latencySpec(rows, "t"));
    expect(lat.startsWith("<svg")).toBe(true);
    for (const w of ["baseline", "socketio", "p99.9"]) expect(lat).toContain(w);
    const cpu = await toSvg(cpuSpec(rows, "t"));
    // CPU per message derived from cpuPct for old lines: the bench's own CPU is left out
    for (const w of ["baseline-pubsub", "socketio-server", "redis-server"]) expect(cpu).toContain(w);
    expect(cpu).not.toContain(">bench<");
  });
});

describe("redisPerMessage", () => {
  test("calls and µs per message between two INFO commandstats samples; unchanged commands dropped", () => {
    const a = { xadd: { calls: 100, usec: 500 }, get: { calls: 5, usec: 5 } };
    const b = { xadd: { calls: 1100, usec: 4500 }, get: { calls: 5, usec: 5 }, zadd: { calls: 1000, usec: 2000 } };
    expect(redisPerMessage(a, b, 1000)).toEqual({ xadd: { calls: 1, us: 4 }, zadd: { calls: 1, us: 2 } });
    expect(redisPerMessage(a, b, 0)).toEqual({});
  });
});
