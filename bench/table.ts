// Markdown table of the step lines of bench/messaging.ts JSON-lines files (as quoted in README.md):
// per target and step, accepted and delivered rates, latency percentiles, loss, errors, CPU µs per
// accepted message per process, and the box's 1-minute load average.
// Usage: bun bench/table.ts FILE.jsonl [FILE.jsonl…]
import { readFileSync } from "node:fs";
import { stepLines } from "./plot.ts";

const rows = ["| target | offered msgs/s | accepted | deliveries/s | p50 | p90 | p99 | p99.9 ms | lost | errors | CPU µs per message | load 1 min |", "|---|---|---|---|---|---|---|---|---|---|---|---|"];
for (const f of process.argv.slice(2)) {
  for (const r of stepLines(readFileSync(f, "utf8")) as any[]) {
    const l = r.latencyMs;
    const errs = Object.entries(r.errors ?? {}).map(([k, v]) => `${k} ${v}`).join(", ") || "–";
    const cpu = Object.entries(r.cpuUsPerMsg ?? {}).filter(([k]) => !["etcd", "api"].includes(k)).map(([k, v]) => `${k} ${v}`).join(", ");
    rows.push(`| ${r.target} | ${r.targetRate} | ${r.acceptedPerSec} | ${r.deliveriesPerSec} | ${l.p50} | ${l.p90} | ${l.p99} | ${l.p999} | ${r.lost} | ${errs} | ${cpu} | ${r.loadavg?.[0] ?? "–"} |`);
  }
}
process.stdout.write(rows.join("\n") + "\n");
