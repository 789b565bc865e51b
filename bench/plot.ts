// SVG plots from the JSON lines of bench/messaging.ts: latency percentiles against offered rate
// per target, and CPU µs per message per process, per target and rate. Vega-Lite specs compiled
// and rendered headless in Bun with vega's View.toSVG (no browser, no canvas).
// Usage: bun bench/plot.ts OUT_DIR FILE.jsonl [FILE.jsonl…]   (writes OUT_DIR/<name>-latency.svg
//        and OUT_DIR/<name>-cpu.svg per input file, <name> = the file's base name)
import { basename, join } from "node:path";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import * as vega from "vega";
import { compile, type TopLevelSpec } from "vega-lite";

interface StepLine {
  target: string;
  step: number | "warmup";
  targetRate: number;
  acceptedPerSec: number;
  latencyMs: Record<string, number>;
  cpuUsPerMsg?: Record<string, number>;
  cpuPct?: Record<string, number[]>;
  loadavg?: number[];
}

/** The step lines (not warm-ups) of one JSON-lines file. */
export function stepLines(text: string): StepLine[] {
  return text
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l))
    .filter((r) => r.latencyMs && r.target && r.step !== "warmup");
}

/** CPU µs per accepted message per process: the line's own field, or derived from cpuPct. */
function cpuUs(r: StepLine): Record<string, number> {
  if (r.cpuUsPerMsg) return r.cpuUsPerMsg;
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(r.cpuPct ?? {})) if (k !== "bench" && r.acceptedPerSec) out[k] = Math.round((v.reduce((a, b) => a + b, 0) * 10_000) / r.acceptedPerSec);
  return out;
}

export async function toSvg(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: "none" });
  return view.toSVG();
}

export function latencySpec(rows: StepLine[], title: string): TopLevelSpec {
  const values = rows.flatMap((r) =>
    (["p50", "p90", "p99", "p999"] as const).map((p) => ({ target: r.target, rate: r.targetRate, percentile: p === "p999" ? "p99.9" : p, ms: Math.max(0.01, r.latencyMs[p]) })),
  );
  return {
    title,
    data: { values },
    width: 260,
    height: 220,
    facet: { column: { field: "target", type: "nominal", title: null } },
    spec: {
      layer: [
        {
          mark: { type: "line", point: true },
          encoding: {
            x: { field: "rate", type: "quantitative", title: "offered msgs/s" },
            y: { field: "ms", type: "quantitative", scale: { type: "log" }, title: "send → receive latency, ms (log)" },
            color: { field: "percentile", type: "nominal", sort: ["p50", "p90", "p99", "p99.9"] },
          },
        },
        { mark: { type: "rule", strokeDash: [4, 4], color: "red" }, encoding: { y: { datum: 50 } } },
      ],
    },
  } as TopLevelSpec;
}

export function cpuSpec(rows: StepLine[], title: string): TopLevelSpec {
  const values = rows.flatMap((r) => Object.entries(cpuUs(r)).filter(([k]) => k !== "bench").map(([proc, us]) => ({ target: r.target, rate: String(r.targetRate), proc, us })));
  return {
    title,
    data: { values },
    width: 200,
    height: 220,
    facet: { column: { field: "target", type: "nominal", title: null } },
    resolve: { scale: { x: "independent" } },
    spec: {
      mark: "bar",
      encoding: {
        x: { field: "rate", type: "ordinal", title: "offered msgs/s", sort: null },
        y: { field: "us", type: "quantitative", aggregate: "sum", title: "CPU µs per accepted message" },
        color: { field: "proc", type: "nominal", title: "process" },
      },
    },
  } as TopLevelSpec;
}

if (import.meta.main) {
  const [outDir, ...files] = process.argv.slice(2);
  if (!outDir || !files.length) throw new Error("usage: bun bench/plot.ts OUT_DIR FILE.jsonl [FILE.jsonl…]");
  mkdirSync(outDir, { recursive: true });
  for (const f of files) {
    const rows = stepLines(readFileSync(f, "utf8"));
    if (!rows.length) {
      process.stderr.write(`${f}: no step lines, skipped\n`);
      continue;
    }
    const name = basename(f).replace(/\.jsonl?$/, "");
    const load = rows.map((r) => r.loadavg?.[0]).filter((x) => x !== undefined) as number[];
    const note = load.length ? ` (shared box, 1-min load ${Math.min(...load)}–${Math.max(...load)})` : "";
    for (const [kind, spec] of [
      ["latency", latencySpec(rows, `${name}: latency percentiles by offered rate${note}`)],
      ["cpu", cpuSpec(rows, `${name}: CPU per message by process${note}`)],
    ] as const) {
      const out = join(outDir, `${name}-${kind}.svg`);
      writeFileSync(out, await toSvg(spec));
      process.stderr.write(`wrote ${out}\n`);
    }
  }
}
