// Default topology against co-located roles, alternating in one run: `bench/messaging.ts --target
// bunchat` once per topology per round (A, B, C, A, B, C, ...), each run's JSON lines kept in --out,
// then one table of p99 and CPU µs per message per process per rate on stderr (and JSON on stdout).
// "Pipeline" = logic + task + redis-server + mariadbd (for a node of logic+task: that node).
// Usage: bun bench/colocate.ts [--rounds 2] [--rates 1000,2500,5000] [--out DIR]
//        [--topologies default,logic+task,all,2x(logic+task+connect),node] [--warmup-rate 1000]
import { parseArgs } from "node:util";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "./lib.ts";

const { values: o } = parseArgs({
  options: {
    rounds: { type: "string", default: "2" },
    rates: { type: "string", default: "1000,2500,5000" },
    out: { type: "string", default: join(ROOT, "bench/results", new Date().toISOString().slice(0, 10), "colocate") },
    topologies: { type: "string", default: "default,logic+task,all" },
    "warmup-rate": { type: "string", default: "1000" },
  },
});
const TOPOLOGIES: Record<string, string[]> = {
  default: [],
  "logic+task": ["--colocate", "logic,task"],
  all: ["--colocate", "all"],
  // two nodes of logic + task + connect (each connect calls its own logic in-process), api apart
  "2x(logic+task+connect)": ["--colocate", "logic,task,connect", "--logic", "2", "--task", "2"],
  // one node process holding every role, one connect instance: no room spans two instances
  node: ["--colocate", "all", "--connect", "1"],
};
const names = String(o.topologies).split(",");
for (const n of names) if (!TOPOLOGIES[n]) throw new Error(`unknown topology ${n}`);
mkdirSync(o.out!, { recursive: true });

interface Step {
  event?: string;
  target?: string;
  step?: string;
  targetRate?: number;
  acceptedPerSec?: number;
  latencyMs?: { p50: number; p99: number };
  lost?: number;
  cpuUsPerMsg?: Record<string, number>;
  loadavg?: number[];
  othersCpuPct?: number;
}
const rows: Record<string, unknown>[] = [];
const PIPELINE = /^(logic|task|redis-server|mariadbd|node\[logic\+task\])$/;

for (let round = 1; round <= Number(o.rounds); round++) {
  for (const name of names) {
    const file = join(o.out!, `${name}-run${round}.jsonl`);
    const cmd = ["bun", "bench/messaging.ts", "--target", "bunchat", "--rates", String(o.rates), "--warmup-rate", String(o["warmup-rate"]), ...TOPOLOGIES[name]];
    process.stderr.write(`\n== round ${round}, ${name}: ${cmd.join(" ")}  (loadavg ${readFileSync("/proc/loadavg", "utf8").trim()})\n`);
    const p = Bun.spawn(cmd, { cwd: ROOT, stdout: "pipe", stderr: "inherit" });
    const text = await new Response(p.stdout).text();
    await p.exited;
    writeFileSync(file, text);
    for (const line of text.split("\n")) {
      if (!line.startsWith("{")) continue;
      const r = JSON.parse(line) as Step;
      if (r.target !== "bunchat" || r.step === undefined || r.step === "warmup" || !r.cpuUsPerMsg) continue;
      const cpu = r.cpuUsPerMsg;
      // A node that also hosts api or connect cannot be split: no pipeline figure then (null).
      const mixed = Object.keys(cpu).some((k) => k.startsWith("node[") && !PIPELINE.test(k));
      const pipeline = mixed ? null : Object.entries(cpu).filter(([k]) => PIPELINE.test(k)).reduce((a, [, v]) => a + v, 0);
      const total = Object.entries(cpu).filter(([k]) => k !== "bench").reduce((a, [, v]) => a + v, 0);
      rows.push({
        round,
        topology: name,
        rate: r.targetRate,
        accepted: r.acceptedPerSec,
        p50: r.latencyMs?.p50,
        p99: r.latencyMs?.p99,
        lost: r.lost,
        pipelineUs: pipeline === null ? null : Math.round(pipeline),
        totalUs: Math.round(total),
        cpuUsPerMsg: cpu,
        loadavg1: r.loadavg?.[0],
        othersCpuPct: r.othersCpuPct,
      });
    }
  }
}
for (const r of rows) process.stdout.write(JSON.stringify(r) + "\n");
writeFileSync(join(o.out!, "summary.jsonl"), rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
process.stderr.write("\n| round | topology | msgs/s | p50 ms | p99 ms | lost | pipeline µs/msg | all processes µs/msg | per process µs/msg | loadavg 1m | others % |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
for (const r of rows) {
  const per = Object.entries(r.cpuUsPerMsg as Record<string, number>).filter(([k]) => k !== "bench").map(([k, v]) => `${k} ${Math.round(v)}`).join(", ");
  process.stderr.write(`| ${r.round} | ${r.topology} | ${r.rate} | ${r.p50} | ${r.p99} | ${r.lost} | ${r.pipelineUs ?? "–"} | ${r.totalUs} | ${per} | ${r.loadavg1} | ${r.othersCpuPct} |\n`);
}
