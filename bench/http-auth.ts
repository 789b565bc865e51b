// Login and me endpoints under autocannon, against `bun run cluster` (1 api, 1 logic) and, in
// the same run, a bare Bun.serve baseline process answering a token lookup from memory.
// Login is argon2id-bound (~150 ms of one core per verify here, 2 verifies at a time): it gets its
// own, small connection count, else it measures a queue of 50 requests behind the 5 s RPC deadline.
// Usage: bun bench/http-auth.ts [--seconds 10] [--connections 50] [--login-connections 4] [--warmup-seconds 20]
import autocannon from "autocannon";
import { parseArgs } from "node:util";
import { report, withBaselineAndCluster } from "./lib.ts";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "10" },
    connections: { type: "string", default: "50" },
    "login-connections": { type: "string", default: "4" },
    // as in http.ts: JavaScriptCore compiles for tens of seconds under load before a step is steady
    "warmup-seconds": { type: "string", default: "20" },
  },
});
const duration = Number(values.seconds);

async function run(name: string, opts: autocannon.Options, connections = Number(values.connections)) {
  await autocannon({ ...opts, duration: Number(values["warmup-seconds"]), connections });
  const r = await autocannon({ ...opts, duration, connections });
  report({
    step: name,
    connections,
    rps: Math.round(r.requests.average),
    non2xx: r.non2xx,
    errors: r.errors,
    latencyMs: { p50: r.latency.p50, p90: r.latency.p90, p99: r.latency.p99, p999: r.latency.p99_9, max: r.latency.max },
  });
  return r;
}

const baselineSrc = `
const tokens = new Map([["t0k3n", { userId: 1, userName: "bench" }]]);
const s = Bun.serve({ port: 0, fetch(req) {
  const t = (req.headers.get("authorization") ?? "").slice(7);
  const u = tokens.get(t);
  return u ? Response.json(u) : Response.json({ error: { code: "UNAUTHENTICATED", message: "no" } }, { status: 401 });
} });
console.log(s.port);`;
await withBaselineAndCluster(baselineSrc, {}, async ({ baseline, api, user }) => {
  const base = await run("baseline bare Bun.serve GET /me", { url: `http://127.0.0.1:${baseline.port}/me`, headers: { authorization: "Bearer t0k3n" } });
  const me = await run("bunchat GET /api/me", { url: `${api}/api/me`, headers: { authorization: `Bearer ${user.token}` } });
  report({ step: "ratio me/baseline", ratio: Math.round((me.requests.average / base.requests.average) * 100) / 100 });
  await run("bunchat POST /api/sessions (argon2id verify)", {
    url: `${api}/api/sessions`,
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ userName: user.userName, password: "bench-password" }),
  }, Number(values["login-connections"]));
});
