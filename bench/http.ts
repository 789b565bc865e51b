// HTTP send and me under autocannon: `POST /api/rooms/{roomId}/messages` and `GET /api/me` against
// `bun run cluster` (1 api, 1 logic, 1 task, 1 connect; the rate limiter set out of the way), and
// in the same run against a bare Bun.serve that checks the same bearer token in a Map, parses the
// same JSON and answers 202 {id, conv, seq, ts} (resp. 200 {userId, userName}) with nothing behind.
// This VM's speed drifts by up to 2× within minutes (bench/journal/2026-11-30.md, "HTTP measured
// in alternating slices"), so after a warm-up of each, the baseline and bunchat are measured in
// alternating slices (--slices of --seconds each) and a ratio is taken per slice pair as well.
// One JSON line per slice and per target (req/s, latency, non-2xx, CPU % of each process and µs
// per request); a human line per slice and a summary table on stderr.
// Usage: bun bench/http.ts [--slices 5] [--seconds 4] [--connections 50] [--body-bytes 64]
//        [--warmup-seconds 20]
//        [--cpu-prof DIR] (CPU profiles of every Bun process of the cluster, written on their exit)
//        [--colocate-roles api,logic] (passed to `bun run cluster`: those roles in one process, calling
//        each other in-process)
import autocannon from "autocannon";
import { parseArgs } from "node:util";
import { resolve } from "node:path";
import { CLK_TCK, loadavg, processTree, report, sampleCpu, withBaselineAndCluster } from "./lib.ts";

const { values } = parseArgs({
  options: {
    slices: { type: "string", default: "5" },
    seconds: { type: "string", default: "4" },
    connections: { type: "string", default: "50" },
    "body-bytes": { type: "string", default: "64" },
    // JavaScriptCore's compiler threads stay busy for tens of seconds under load (README "the
    // first steps paid for JIT compilation"); each target warms up this long before it is measured.
    "warmup-seconds": { type: "string", default: "20" },
    "cpu-prof": { type: "string" },
    "colocate-roles": { type: "string" },
  },
});
const slices = Number(values.slices);
const sliceSeconds = Number(values.seconds);
const connections = Number(values.connections);
const body = JSON.stringify({ body: "x".repeat(Number(values["body-bytes"])) });

interface Target {
  step: string;
  opts: autocannon.Options;
  pids: number[];
}

interface Row {
  step: string;
  rps: number;
  /** Median of the slices' p50 and highest of their p99, ms. */
  p50: number;
  p99: number;
  non2xx: number;
  usPerReq: Record<string, number>;
  /** req/s of each slice. */
  sliceRps: number[];
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const round2 = (x: number) => Math.round(x * 100) / 100;

/**
 * Warms up both targets, then measures them in `slices` alternating slices of `sliceSeconds`
 * (a, b, a, b, …), so that a change of the machine's speed during the run falls on both alike.
 * Returns a row per target: req/s and CPU µs per request per process over all its slices.
 */
async function pair(targets: [Target, Target]): Promise<[Row, Row]> {
  for (const t of targets) await autocannon({ ...t.opts, duration: Number(values["warmup-seconds"]), connections });
  const acc = targets.map((t) => ({
    t,
    labels: new Map(t.pids.flatMap((p) => [...processTree(p)])),
    requests: 0,
    seconds: 0,
    non2xx: 0,
    ticks: {} as Record<string, number>,
    p50: [] as number[],
    p99: [] as number[],
    rps: [] as number[],
  }));
  for (let i = 0; i < slices; i++) {
    for (const x of acc) {
      const c0 = sampleCpu(x.labels.keys());
      const self0 = process.cpuUsage();
      const from = Date.now();
      const r = await autocannon({ ...x.t.opts, duration: sliceSeconds, connections });
      const to = Date.now();
      const c1 = sampleCpu(x.labels.keys());
      const self = process.cpuUsage(self0);
      const secs = (c1.at - c0.at) / 1000;
      // the load generator (autocannon runs in this process) in the same ticks as the rest
      const ticks: Record<string, number> = { bench: ((self.user + self.system) / 1e6) * CLK_TCK };
      x.ticks.bench = (x.ticks.bench ?? 0) + ticks.bench;
      for (const [pid, t1] of c1.ticks) {
        const t0 = c0.ticks.get(pid);
        if (t0 === undefined || t1 === t0) continue;
        const label = x.labels.get(pid) ?? String(pid);
        ticks[label] = (ticks[label] ?? 0) + t1 - t0;
        x.ticks[label] = (x.ticks[label] ?? 0) + t1 - t0;
      }
      const rps = r.requests.total / secs;
      x.requests += r.requests.total;
      x.seconds += secs;
      x.non2xx += r.non2xx;
      x.p50.push(r.latency.p50);
      x.p99.push(r.latency.p99);
      x.rps.push(Math.round(rps));
      const cpuPct = Object.fromEntries(Object.entries(ticks).map(([k, v]) => [k, Math.round((v / CLK_TCK / secs) * 100)]));
      report({ step: x.t.step, slice: i + 1, connections, rps: Math.round(rps), non2xx: r.non2xx, errors: r.errors, latencyMs: { p50: r.latency.p50, p90: r.latency.p90, p99: r.latency.p99, max: r.latency.max }, cpuPct, loadavg: loadavg(), window: { from, to } });
      process.stderr.write(`${x.t.step} slice ${i + 1}/${slices}: ${Math.round(rps)} req/s, p50 ${r.latency.p50} p99 ${r.latency.p99} ms, non-2xx ${r.non2xx}; CPU % ${JSON.stringify(cpuPct)}\n`);
    }
  }
  const rows = acc.map((x): Row => ({
    step: x.t.step,
    rps: Math.round(x.requests / x.seconds),
    p50: median(x.p50),
    p99: Math.max(...x.p99),
    non2xx: x.non2xx,
    usPerReq: Object.fromEntries(Object.entries(x.ticks).map(([k, v]) => [k, Math.round(((v / CLK_TCK) * 1e6) / Math.max(1, x.requests))])),
    sliceRps: x.rps,
  }));
  for (const r of rows) report({ ...r, event: "target" });
  return rows as [Row, Row];
}

// The ceiling: what any server must do for these two requests (token lookup, JSON parse, answer).
const baselineSrc = `
const tokens = new Map([["t0k3n", { userId: 1, userName: "bench" }]]);
let seq = 0;
const unauth = () => Response.json({ error: { code: "UNAUTHENTICATED", message: "no" } }, { status: 401 });
const s = Bun.serve({ port: 0, hostname: "127.0.0.1", async fetch(req) {
  const u = tokens.get((req.headers.get("authorization") ?? "").slice(7));
  if (!u) return unauth();
  const path = new URL(req.url).pathname;
  if (req.method === "GET" && path === "/api/me") return Response.json(u);
  const m = /^\\/api\\/rooms\\/([^/]+)\\/messages$/.exec(path);
  if (req.method === "POST" && m) {
    let b;
    try { b = await req.json(); } catch { return Response.json({ error: { code: "BAD_REQUEST", message: "not JSON" } }, { status: 400 }); }
    if (typeof b?.body !== "string") return Response.json({ error: { code: "BAD_REQUEST", message: "body" } }, { status: 400 });
    const n = ++seq;
    return Response.json({ id: String(n), conv: "room:" + m[1], seq: n, ts: Date.now() }, { status: 202 });
  }
  return Response.json({ error: { code: "NOT_FOUND", message: "no" } }, { status: 404 });
} });
console.log(s.port);`;

const profile: Record<string, string> = values["cpu-prof"] ? { BUN_OPTIONS: `--cpu-prof --cpu-prof-dir=${resolve(values["cpu-prof"])}` } : {};
await withBaselineAndCluster(baselineSrc, { IM_RATE_LIMIT: "1000000", IM_RATE_BURST: "1000000", ...profile }, async ({ baseline, cluster, api, user }) => {
  const bearer = (t: string) => ({ authorization: `Bearer ${t}`, "content-type": "application/json" });
  const post = (base: string, t: string): autocannon.Options => ({ url: `${base}/api/rooms/bench/messages`, method: "POST", headers: bearer(t), body });
  const me = (base: string, t: string): autocannon.Options => ({ url: `${base}/api/me`, headers: bearer(t) });
  const b = `http://127.0.0.1:${baseline.port}`;
  const [bme, cme] = await pair([
    { step: "baseline GET /api/me", opts: me(b, "t0k3n"), pids: [baseline.pid] },
    { step: "bunchat GET /api/me", opts: me(api, user.token), pids: [cluster.pid] },
  ]);
  const [bpost, cpost] = await pair([
    { step: "baseline POST /api/rooms/{roomId}/messages", opts: post(b, "t0k3n"), pids: [baseline.pid] },
    { step: "bunchat POST /api/rooms/{roomId}/messages", opts: post(api, user.token), pids: [cluster.pid] },
  ]);
  const rows = [bme, cme, bpost, cpost];
  /** bunchat / baseline over all slices, and per slice pair (each bunchat slice against the baseline slice just before it). */
  const ratios = (base: Row, ours: Row) => ({ all: round2(ours.rps / base.rps), perSlice: ours.sliceRps.map((r, i) => round2(r / base.sliceRps[i])) });
  const ratio = { me: ratios(bme, cme), post: ratios(bpost, cpost) };
  report({ event: "summary", ratio, target: "≥ 0.5 each", loadavg: loadavg() });
  const show = (r: { all: number; perSlice: number[] }) => `${r.all} (slices ${r.perSlice.join(", ")})`;
  process.stderr.write(
    [
      "",
      `| step | req/s | p50 ms (median of slices) | p99 ms (highest slice) | non-2xx | CPU µs per request, per process |`,
      "|---|---|---|---|---|---|",
      ...rows.map((r) => `| ${r.step} | ${r.rps} | ${r.p50} | ${r.p99} | ${r.non2xx} | ${Object.entries(r.usPerReq).map(([k, v]) => `${k} ${v}`).join(", ")} |`),
      `ratio bunchat/baseline: GET /api/me ${show(ratio.me)}; POST messages ${show(ratio.post)} (target ≥ 0.5 each)`,
      "",
    ].join("\n"),
  );
}, values["colocate-roles"] ? ["--colocate-roles", values["colocate-roles"]] : []);
