// The internal ops port of every role (CONTRACT.md v1.1 /readyz; issue 13 item 3): /healthz,
// /readyz and /metrics there, none of /metrics or /readyz on the public ports; /readyz is 503 with
// the error envelope naming what is down (a private redis-server killed under logic; logic gone
// under api); the gateway hands out IM_PUBLIC_WS_URL, and only while a connect instance is ready.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createService, type Service } from "../src/infra/service.ts";
import { redisSpec } from "../src/infra/redis.ts";
import { LogicServer } from "../src/logic/server.ts";
import { Discovery } from "../src/shared/discovery.ts";
import { addressTowards, resolveHosts } from "../src/shared/host.ts";
import { loadConfig } from "../src/shared/config.ts";
import { silentLogger } from "../src/shared/log.ts";
import { newInstanceId } from "../src/shared/instance.ts";
import { failedChecks } from "../src/shared/ops.ts";
import { startCluster, testConfig, type TestCluster } from "./support/cluster.ts";
import { eventually } from "./support/http.ts";
import { freePort } from "./support/infra.ts";

const ops = (port: number) => `http://127.0.0.1:${port}`;
async function get(url: string): Promise<{ status: number; text: string }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
  return { status: res.status, text: await res.text() };
}

const clusters: TestCluster[] = [];
afterAll(async () => {
  for (const c of clusters) await c.stop();
});

describe("ops port", () => {
  test("every role: /healthz, /readyz and /metrics internal; public ports serve no /metrics", async () => {
    const c = await startCluster({ logic: 1, api: 1, connect: 1, task: 1 });
    clusters.push(c);
    const ports = { api: c.api[0].metricsPort, logic: c.logic[0].metricsPort, connect: c.connect[0].metricsPort };
    for (const [role, port] of Object.entries(ports)) {
      expect(port).toBeGreaterThan(0);
      expect((await get(`${ops(port)}/healthz`)).status).toBe(200);
      const ready = await get(`${ops(port)}/readyz`);
      expect({ role, ...ready }).toEqual({ role, status: 200, text: '{"ready":true}' });
      const m = (await get(`${ops(port)}/metrics`)).text;
      expect(m).toContain(`bunchat_build_info{version="0.1.0",role="${role}"} 1`);
      expect(m).toContain(`bunchat_${role}_errors_total`);
      expect(m).not.toMatch(/instance="/);
    }
    expect((await get(`${c.apiUrl()}/metrics`)).status).toBe(404);
    expect((await get(`${c.apiUrl()}/readyz`)).status).toBe(404);
    expect((await get(`${c.apiUrl()}/healthz`)).status).toBe(200);
    expect((await get(`http://127.0.0.1:${c.connect[0].port}/metrics`)).status).toBe(404);
    // An error answered by api is counted by code.
    expect((await get(`${c.apiUrl()}/api/me`)).status).toBe(401);
    expect((await get(`${ops(ports.api)}/metrics`)).text).toMatch(/bunchat_api_errors_total\{code="UNAUTHENTICATED",role="api"\} [1-9]/);
  }, 60_000);

  test("api /readyz names logic when no logic instance is registered; the gateway only hands out ready connect instances", async () => {
    const c = await startCluster({ logic: 1, api: 1, connect: 1, config: { publicWsUrl: "wss://chat.example.com/ws" } });
    clusters.push(c);
    const gw = await get(`${c.apiUrl()}/api/gateway`);
    expect(gw).toEqual({ status: 200, text: '{"wsUrl":"wss://chat.example.com/ws"}' });
    await c.stopMember(c.logic[0]);
    const r = await get(`${ops(c.api[0].metricsPort)}/readyz`);
    expect(r.status).toBe(503);
    expect(JSON.parse(r.text)).toEqual({ error: { code: "UNAVAILABLE", message: expect.stringContaining("logic instances in etcd") } });
    await c.stopMember(c.connect[0]);
    await eventually(async () => (await get(`${c.apiUrl()}/api/gateway`)).status === 503, 10_000, "gateway 503 without connect");
  }, 60_000);

  test("logic /readyz names redis while its Redis is down, and is ready again once it is back", async () => {
    const dir = mkdtempSync(join(tmpdir(), "bunchat-readyz-"));
    const port = await freePort();
    const redis: Service = createService(redisSpec({ port, dir }), { log: silentLogger, logFile: join(dir, "redis.log") });
    await redis.start();
    const config = await testConfig({ redisUrl: `redis://127.0.0.1:${port}` });
    const c = await startCluster({ logic: 0, api: 0 });
    clusters.push(c);
    const discovery = new Discovery({ endpoints: config.etcdEndpoints, prefix: config.etcdPrefix, leaseTtlSec: config.leaseTtlSec, log: silentLogger });
    const logic = new LogicServer({ config, log: silentLogger, db: c.db, discovery, instanceId: newInstanceId("logic") });
    try {
      await logic.start();
      const url = `${ops(logic.metricsPort)}/readyz`;
      expect((await get(url)).status).toBe(200);
      await redis.stop();
      const down = await get(url);
      expect(down.status).toBe(503);
      expect(JSON.parse(down.text).error.message).toMatch(/^not ready: redis \(/);
      expect(down.text).not.toContain("mysql");
      const metrics = await get(`${ops(logic.metricsPort)}/metrics`);
      expect(metrics.text).toContain('bunchat_dependency_up{dependency="redis",role="logic"} 0');
      expect(metrics.text).toContain('bunchat_dependency_up{dependency="mysql",role="logic"} 1');
      expect(metrics.text).toContain('bunchat_ready{role="logic"} 0');
      await redis.start();
      await eventually(async () => (await get(url)).status === 200, 15_000, "ready after Redis is back");
      expect((await get(`${ops(logic.metricsPort)}/metrics`)).text).toContain('bunchat_dependency_up{dependency="redis",role="logic"} 1');
    } finally {
      await logic.stop();
      await discovery.close();
      await redis.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe("readiness helpers", () => {
  test("failedChecks names each failing check, with a timeout for one that hangs", async () => {
    const down = await failedChecks([
      { name: "a", check: async () => 1 },
      { name: "b", check: async () => Promise.reject(Object.assign(new Error("x"), { code: "ECONNREFUSED" })) },
      { name: "c", check: () => new Promise(() => undefined) },
      { name: "d", check: async () => Promise.reject(new Error("dial mysql://app:secret@db:3306 failed")) },
    ]);
    expect(down).toEqual(["b (ECONNREFUSED)", "c (no answer within 1000 ms)", "d (dial …@db:3306 failed)"]);
  });

  test("IM_HOST=auto is the local address of the connection to etcd; loopback with a remote etcd warns", async () => {
    const srv = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    try {
      expect(await addressTowards([`http://127.0.0.1:${srv.port}`])).toBe("127.0.0.1");
      const cfg = loadConfig({ IM_HOST: "auto", IM_ETCD_ENDPOINTS: `http://127.0.0.1:${srv.port}` }).config;
      expect(cfg.metricsHost).toBe("auto");
      expect(await resolveHosts(cfg)).toEqual({ host: "127.0.0.1", metricsHost: "127.0.0.1", warnings: [] });
    } finally {
      srv.stop(true);
    }
    const closed = await freePort();
    await expect(addressTowards([`http://127.0.0.1:${closed}`])).rejects.toThrow(/IM_HOST=auto: no etcd endpoint reachable/);
    const remote = await resolveHosts(loadConfig({ IM_ETCD_ENDPOINTS: "http://etcd.example:2379" }).config);
    expect(remote.warnings[0]).toContain("IM_HOST=127.0.0.1 is a loopback address but etcd is remote");
  });

  test("IM_PUBLIC_WS_URL must be a ws:// or wss:// URL", () => {
    expect(loadConfig({ IM_PUBLIC_WS_URL: "wss://chat.example.com/ws" }).config.publicWsUrl).toBe("wss://chat.example.com/ws");
    expect(() => loadConfig({ IM_PUBLIC_WS_URL: "https://chat.example.com/ws" })).toThrow(/IM_PUBLIC_WS_URL/);
  });
});
