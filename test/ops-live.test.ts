// The deploy pieces against a live `bun run cluster --connect 2` (real processes on loopback):
// Debian's nginx in front of it with deploy/nginx's routes (HTTP, WebSocket upgrade, the gateway's
// public URL, a message crossing both connect instances through the balancer); Debian's Prometheus
// scraping every instance from targets generated from the ready line, with the alert rules loaded;
// and every metric the Grafana dashboard queries present on the instances' /metrics.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { METRICS_OFFSETS } from "../src/shared/config.ts";
import { WsClient } from "./support/connect.ts";
import { eventually, http, registerUser } from "./support/http.ts";
import { freePort } from "./support/infra.ts";
import { spawnCluster, type ProcessCluster } from "./support/process-cluster.ts";

const REPO = join(import.meta.dir, "..");
let cluster: ProcessCluster;
let nginx: Bun.Subprocess | undefined;
let prometheus: Bun.Subprocess | undefined;
let lbPort = 0;
let promPort = 0;
const dirs: string[] = [];
const lb = () => `http://127.0.0.1:${lbPort}`;
const publicWsUrl = () => `ws://127.0.0.1:${lbPort}/ws`;

function tempDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(d, 0o755); // nginx workers may run as another user
  dirs.push(d);
  return d;
}

const portOf = (url: string) => Number(new URL(url).port);

/** The role of an ops URL of the ready line, from its port's offset (METRICS_OFFSETS). */
function roleOf(url: string): string {
  const off = portOf(url) - cluster.base;
  const hit = Object.entries(METRICS_OFFSETS).find(([, o]) => off >= o && off < o + 10);
  if (!hit) throw new Error(`no role for ${url}`);
  return hit[0];
}

/** nginx with deploy/nginx's http and location files, upstreams from the ready line, in the foreground. */
async function startNginx(): Promise<void> {
  const dir = tempDir("bunchat-nginx-");
  mkdirSync(join(dir, "logs"));
  const up = (urls: string[]) => urls.map((u) => `    server 127.0.0.1:${portOf(u)};`).join("\n");
  writeFileSync(
    join(dir, "nginx.conf"),
    `${process.getuid?.() === 0 ? "user root;\n" : ""}worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/logs/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  include ${REPO}/deploy/nginx/bunchat-http.conf;
  upstream api_pool {
${up(cluster.ready.api)}
  }
  upstream connect_pool {
    least_conn;
${up(cluster.ready.connect)}
  }
  server {
    listen 127.0.0.1:${lbPort};
    set $bunchat_api http://api_pool;
    set $bunchat_connect http://connect_pool;
    include ${REPO}/deploy/nginx/bunchat-locations.conf;
  }
}
`,
  );
  nginx = Bun.spawn({ cmd: ["nginx", "-p", dir, "-c", join(dir, "nginx.conf"), "-e", join(dir, "logs/error.log")], stdout: "ignore", stderr: "pipe" });
  await eventually(async () => (await fetch(`${lb()}/nginx-health`)).status === 200, 15_000, "nginx answering");
}

/** Prometheus scraping every instance of the ready line (one job per role), alert rules loaded. */
async function startPrometheus(): Promise<void> {
  const dir = tempDir("bunchat-prometheus-");
  const byRole = new Map<string, string[]>();
  for (const url of cluster.ready.metrics) byRole.set(roleOf(url), [...(byRole.get(roleOf(url)) ?? []), new URL(url).host]);
  const jobs = [...byRole].map(([role, targets]) => `  - job_name: ${role}\n    static_configs:\n      - targets: [${targets.map((t) => `"${t}"`).join(", ")}]`).join("\n");
  writeFileSync(
    join(dir, "prometheus.yml"),
    `global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - ${REPO}/deploy/prometheus/alerts.yml\nscrape_configs:\n${jobs}\n`,
  );
  const check = Bun.spawnSync({ cmd: ["promtool", "check", "config", join(dir, "prometheus.yml")], stdout: "pipe", stderr: "pipe" });
  if (check.exitCode !== 0) throw new Error(`generated config invalid: ${check.stdout}${check.stderr}`);
  prometheus = Bun.spawn({
    cmd: ["prometheus", `--config.file=${join(dir, "prometheus.yml")}`, `--storage.tsdb.path=${join(dir, "data")}`, `--web.listen-address=127.0.0.1:${promPort}`],
    stdout: "ignore",
    stderr: "pipe",
  });
  await eventually(async () => (await fetch(`http://127.0.0.1:${promPort}/-/ready`)).status === 200, 30_000, "Prometheus ready");
}

async function promQuery(q: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]> {
  const res = await fetch(`http://127.0.0.1:${promPort}/api/v1/query?query=${encodeURIComponent(q)}`);
  const body = (await res.json()) as { status: string; data: { result: { metric: Record<string, string>; value: [number, string] }[] } };
  if (body.status !== "success") throw new Error(`query ${q} failed`);
  return body.data.result;
}

async function stopProc(p: Bun.Subprocess | undefined): Promise<void> {
  if (!p || p.exitCode !== null) return;
  p.kill("SIGTERM");
  const done = await Promise.race([p.exited.then(() => true), Bun.sleep(10_000).then(() => false)]);
  if (!done) p.kill("SIGKILL");
}

const clients: WsClient[] = [];

beforeAll(async () => {
  lbPort = await freePort();
  promPort = await freePort();
  cluster = await spawnCluster(["--connect", "2"], { IM_PUBLIC_WS_URL: publicWsUrl() });
  await startNginx();
}, 90_000);

afterAll(async () => {
  for (const c of clients) c.ws.close();
  await stopProc(nginx);
  await stopProc(prometheus);
  await cluster?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}, 60_000);

/** Open WebSocket connections per connect instance, from each one's own /metrics. */
async function connectionsPerInstance(): Promise<number[]> {
  const urls = cluster.ready.metrics.filter((u) => roleOf(u) === "connect");
  return Promise.all(
    urls.map(async (u) => {
      const m = /^bunchat_connect_connections\{[^}]*\} (\d+)$/m.exec(await (await fetch(`${u}/metrics`)).text());
      return Number(m?.[1] ?? -1);
    }),
  );
}

describe("nginx in front of bun run cluster --connect 2", () => {
  test("HTTP through the balancer: the web page, the API, the gateway's public URL; no internal endpoints", async () => {
    const page = await fetch(`${lb()}/`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain("<html");
    const u = await registerUser(lb());
    expect((await http(lb(), "GET", "/api/me", { token: u.token })).body).toEqual({ userId: u.userId, userName: u.userName });
    expect(await http(lb(), "GET", "/api/gateway")).toEqual({ status: 200, body: { wsUrl: publicWsUrl() } });
    // Straight from an api instance too: the public URL, never an instance's own address.
    expect((await http(cluster.ready.api[0], "GET", "/api/gateway")).body).toEqual({ wsUrl: publicWsUrl() });
    expect((await fetch(`${lb()}/metrics`)).status).toBe(404);
    expect((await fetch(`${lb()}/readyz`)).status).toBe(404);
    expect((await fetch(`${lb()}/healthz`)).status).toBe(200);
  });

  test("a WebSocket upgraded through the balancer; a message crosses both connect instances through it", async () => {
    expect(await connectionsPerInstance()).toEqual([0, 0]);
    const [a, b] = [await registerUser(lb()), await registerUser(lb())];
    const { wsUrl } = (await http(lb(), "GET", "/api/gateway")).body as { wsUrl: string };
    const wa = await WsClient.open(`${wsUrl}?token=${encodeURIComponent(a.token)}`);
    clients.push(wa);
    wa.send({ op: "ping", ref: 1 });
    expect((await wa.op("pong", 1)).ts).toBeNumber();
    const wb = await WsClient.open(`${wsUrl}?token=${encodeURIComponent(b.token)}`);
    clients.push(wb);
    // least_conn put the second connection on the other instance: one each.
    await eventually(async () => (await connectionsPerInstance()).join() === "1,1", 10_000, "one connection on each connect instance");
    const room = `ops-${Date.now().toString(36)}`;
    wa.send({ op: "join", room, ref: "j" });
    await wa.op("joined", "j");
    wb.send({ op: "join", room, ref: "j" });
    await wb.op("joined", "j");
    wa.send({ op: "send", room, body: "across the balancer", ref: "s" });
    const ack = await wa.op("ack", "s");
    const got = await wb.next((f) => f.op === "msg" && f.id === ack.id, 10_000);
    expect(got).toMatchObject({ op: "msg", conv: `room:${room}`, body: "across the balancer", from: { userId: a.userId } });
    // And back, over HTTP through the balancer, to b's socket on the other instance.
    const sent = await http(lb(), "POST", `/api/users/${a.userId}/messages`, { token: b.token, body: { body: "and back" } });
    expect(sent.status).toBe(202);
    expect(await wa.next((f) => f.op === "msg" && f.id === sent.body.id, 10_000)).toMatchObject({ body: "and back", from: { userId: b.userId } });
  }, 30_000);
});

describe("Prometheus against the cluster", () => {
  beforeAll(startPrometheus, 40_000);

  test("every instance of the ready line is an `up` target, and ready", async () => {
    const n = cluster.ready.metrics.length;
    expect(n).toBe(1 + 1 + 1 + 2);
    const up = await eventually(async () => {
      const r = await promQuery("up");
      return r.length === n && r.every((s) => s.value[1] === "1") ? r : undefined;
    }, 30_000, "every target up");
    expect(up.map((s) => s.metric.job).sort()).toEqual(["api", "connect", "connect", "logic", "task"]);
    const ready = await eventually(async () => {
      const r = await promQuery("bunchat_ready");
      return r.length === n && r.every((s) => s.value[1] === "1") ? r : undefined;
    }, 30_000, "every instance ready");
    expect(ready.length).toBe(n);
    // No instance label of our own: Prometheus's is the scrape target.
    expect(new Set(up.map((s) => s.metric.instance))).toEqual(new Set(cluster.ready.metrics.map((u) => new URL(u).host)));
  }, 40_000);

  test("the group lag, pending and stream length metrics are present per group and partition", async () => {
    const a = await registerUser(lb());
    for (let i = 0; i < 5; i++) expect((await http(lb(), "POST", `/api/rooms/prom-${i}/messages`, { token: a.token, body: { body: `m${i}` } })).status).toBe(202);
    for (const metric of ["bunchat_task_group_lag", "bunchat_task_group_pending"]) {
      const r = await eventually(async () => {
        const res = await promQuery(metric);
        return new Set(res.map((s) => s.metric.group)).size === 2 ? res : undefined;
      }, 30_000, `${metric} for both groups`);
      expect([...new Set(r.map((s) => s.metric.group))].sort()).toEqual(["persist", "push"]);
      for (const s of r) expect(Number(s.metric.partition)).toBeWithin(0, 8);
    }
    expect((await promQuery("bunchat_stream_length")).length).toBeGreaterThan(0);
    // Everything sent was delivered and persisted: lag drains to 0.
    await eventually(async () => {
      const r = await promQuery("sum(bunchat_task_group_lag) + sum(bunchat_task_group_pending)");
      return r[0]?.value[1] === "0";
    }, 30_000, "lag and pending back to 0");
    // The persist delay histogram saw the five messages.
    await eventually(async () => Number((await promQuery("sum(bunchat_persist_delay_seconds_count)"))[0]?.value[1] ?? 0) >= 5, 30_000, "persist delay observed");
  }, 60_000);
});

describe("Grafana dashboard against the cluster", () => {
  test("every metric the dashboard queries is exported by some instance's /metrics", async () => {
    const dash = JSON.parse(readFileSync(join(REPO, "deploy/grafana/dashboards/bunchat.json"), "utf8"));
    const queried = new Set<string>();
    for (const p of dash.panels) for (const t of p.targets) for (const m of t.expr.matchAll(/\b(bunchat_[a-z0-9_]+)/g)) queried.add(m[1]);
    expect(queried.size).toBeGreaterThan(15);
    const exported = new Set<string>();
    for (const url of cluster.ready.metrics) {
      const text = await (await fetch(`${url}/metrics`)).text();
      for (const m of text.matchAll(/^# TYPE (\S+) (\w+)$/gm)) {
        exported.add(m[1]);
        if (m[2] === "histogram") for (const s of ["_bucket", "_sum", "_count"]) exported.add(m[1] + s);
      }
    }
    expect([...queried].filter((m) => !exported.has(m))).toEqual([]);
    // The alert rules' metrics too.
    const rules = readFileSync(join(REPO, "deploy/prometheus/alerts.yml"), "utf8");
    const inRules = [...rules.matchAll(/\b(bunchat_[a-z0-9_]+)/g)].map((m) => m[1]).filter((m) => !m.endsWith("_"));
    expect(inRules.filter((m) => !exported.has(m))).toEqual([]);
  });
});
