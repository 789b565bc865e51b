// HTTP send and me under autocannon: `POST /api/rooms/{roomId}/messages` and `GET /api/me` against
// `bun run cluster` (1 api, 1 logic, 1 task, 1 connect; the rate limiter set out of the way), and
// in the same run against a bare Bun.serve that checks the same bearer token in a Map, parses the
// same JSON and answers 202 {id, conv, seq, ts} (resp. 200 {userId, userName}) with nothing behind.
// One JSON line per step (req/s, latency, non-2xx, CPU % of each process and µs per request, the
// box's load average); a human line per step and a summary table on stderr.
// Usage: bun bench/http.ts [--seconds 10] [--connections 50] [--body-bytes 64] [--warmup-seconds 20]
//        [--cpu-prof DIR] (CPU profiles of every Bun process of the cluster, written on their exit)
//        [--colocate-roles api,logic] (passed to `bun run cluster`: those roles in one process, calling
//        each other in-process)
import autocannon from "autocannon";
import { parseArgs } from "node:util";
import { resolve } from "node:path";
import { cpuBetween, loadavg, processTree, report, sampleCpu, withBaselineAndCluster } from "./lib.ts";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "10" },
    connections: { type: "string", default: "50" },
    "body-bytes": { type: "string", default: "64" },
    // JavaScriptCore's compiler threads stay busy for tens of seconds under load (README "the
    // first steps paid for JIT compilation"); each step warms up this long before it is measured.
    "warmup-seconds": { type: "string", default: "20" },
    "cpu-prof": { type: "string" },
    "colocate-roles": { type: "string" },
  },
});
const duration = Number(values.seconds);
const connections = Number(values.connections);
const body = JSON.stringify({ body: "x".repeat(Number(values["body-bytes"])) });

interface Row {
  step: string;
  rps: number;
  p50: number;
  p99: number;
  non2xx: number;
  usPerReq: Record<string, number>;
}

async function run(step: string, opts: autocannon.Options, pids: number[]): Promise<Row> {
  await autocannon({ ...opts, duration: Number(values["warmup-seconds"]), connections });
  const labels = new Map(pids.flatMap((p) => [...processTree(p)]));
  const c0 = sampleCpu(labels.keys());
  const from = Date.now();
  const r = await autocannon({ ...opts, duration, connections });
  const to = Date.now();
  const cpuPct = cpuBetween(c0, sampleCpu(labels.keys()), labels);
  const rps = r.requests.average;
  const usPerReq = Object.fromEntries(Object.entries(cpuPct).map(([k, v]) => [k, Math.round((v.reduce((a, b) => a + b, 0) * 10_000) / Math.max(1, rps))]));
  const line = {
    step,
    connections,
    rps: Math.round(rps),
    non2xx: r.non2xx,
    errors: r.errors,
    statusCodes: r.statusCodeStats,
    latencyMs: { p50: r.latency.p50, p90: r.latency.p90, p99: r.latency.p99, p999: r.latency.p99_9, max: r.latency.max },
    cpuPct,
    usPerReq,
    loadavg: loadavg(),
    window: { from, to },
  };
  report(line);
  process.stderr.write(`${step}: ${line.rps} req/s, p50 ${r.latency.p50} p99 ${r.latency.p99} ms, non-2xx ${r.non2xx}; CPU % ${JSON.stringify(cpuPct)}; load ${line.loadavg.join(" ")}\n`);
  return { step, rps: line.rps, p50: r.latency.p50, p99: r.latency.p99, non2xx: r.non2xx, usPerReq };
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
  const rows = [
    await run("baseline GET /api/me", me(b, "t0k3n"), [baseline.pid]),
    await run("bunchat GET /api/me", me(api, user.token), [cluster.pid]),
    await run("baseline POST /api/rooms/{roomId}/messages", post(b, "t0k3n"), [baseline.pid]),
    await run("bunchat POST /api/rooms/{roomId}/messages", post(api, user.token), [cluster.pid]),
  ];
  const ratio = (i: number, j: number) => Math.round((rows[i].rps / rows[j].rps) * 100) / 100;
  report({ event: "summary", ratio: { me: ratio(1, 0), post: ratio(3, 2) }, target: "≥ 0.5 each", loadavg: loadavg() });
  process.stderr.write(
    [
      "",
      `| step | req/s | p50 ms | p99 ms | non-2xx | CPU µs per request, per process |`,
      "|---|---|---|---|---|---|",
      ...rows.map((r) => `| ${r.step} | ${r.rps} | ${r.p50} | ${r.p99} | ${r.non2xx} | ${Object.entries(r.usPerReq).map(([k, v]) => `${k} ${v}`).join(", ")} |`),
      `ratio bunchat/baseline: GET /api/me ${ratio(1, 0)}, POST messages ${ratio(3, 2)} (target ≥ 0.5 each)`,
      "",
    ].join("\n"),
  );
}, values["colocate-roles"] ? ["--colocate-roles", values["colocate-roles"]] : []);
