// Login limits and password hashing under load (issue 10 items 3 and 4, CONTRACT.md v1.1):
// at most IM_LOGIN_MAX_FAILURES password checks per user name and client address, however
// concurrent; other addresses unaffected; X-Forwarded-For only from a trusted proxy; a limit per
// client address on logins and registrations; a full hashing pool answers 429 with Retry-After.
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { Registry } from "prom-client";
import { ApiServer } from "../src/api/server.ts";
import { newInstanceId } from "../src/shared/instance.ts";
import { startCluster, type TestCluster } from "./support/cluster.ts";
import { http, registerUser, uniqueName } from "./support/http.ts";

let c: TestCluster;
beforeAll(async () => {
  // The test process reaches the api from 127.0.0.1, trusted as a proxy here, so X-Forwarded-For
  // picks the client address of each request.
  c = await startCluster({ logic: 1, api: 1, config: { trustedProxies: ["127.0.0.1"], authAddrLimit: 200 } });
});
afterAll(async () => {
  await c?.stop();
});

async function passwordChecks(registry: Registry): Promise<number> {
  const m = await registry.getSingleMetric("bunchat_logic_password_jobs_total")?.get();
  return (m?.values ?? []).filter((v) => v.labels.kind === "verify" && v.labels.result === "done").reduce((s, v) => s + v.value, 0);
}

const login = (base: string, userName: string, password: string, from?: string) =>
  fetch(`${base}/api/sessions`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(from ? { "x-forwarded-for": from } : {}) },
    body: JSON.stringify({ userName, password }),
  });

test("60 concurrent wrong logins check at most 10 passwords, then 429; another address still logs in", async () => {
  const u = await registerUser(c.apiUrl(), uniqueName("lim"), "right-password");
  const attacker = "198.51.100.10";
  const before = await passwordChecks(c.logic[0].registry);
  const res = await Promise.all(Array.from({ length: 60 }, () => login(c.apiUrl(), u.userName, "wrong-password", attacker)));
  const statuses = res.map((r) => r.status);
  const checked = (await passwordChecks(c.logic[0].registry)) - before;
  expect(checked).toBeLessThanOrEqual(c.config.loginMaxFailures);
  expect(statuses.filter((s) => s === 401).length).toBe(checked);
  expect(statuses.filter((s) => s === 429).length).toBe(60 - checked);
  expect(res.filter((r) => r.status === 429).every((r) => Number(r.headers.get("retry-after")) > 0)).toBe(true);
  // From that address, even the right password is refused now, without a check.
  expect((await login(c.apiUrl(), u.userName, "right-password", attacker)).status).toBe(429);
  expect((await passwordChecks(c.logic[0].registry)) - before).toBe(checked);
  // The real user, elsewhere, is not locked out.
  expect((await login(c.apiUrl(), u.userName, "right-password", "203.0.113.20")).status).toBe(200);
});

test("a successful login clears the count for that name and address", async () => {
  const u = await registerUser(c.apiUrl(), uniqueName("clr"), "right-password");
  const from = "198.51.100.11";
  for (let i = 0; i < c.config.loginMaxFailures - 1; i++) expect((await login(c.apiUrl(), u.userName, "wrong-password", from)).status).toBe(401);
  expect((await login(c.apiUrl(), u.userName, "right-password", from)).status).toBe(200);
  for (let i = 0; i < c.config.loginMaxFailures; i++) expect((await login(c.apiUrl(), u.userName, "wrong-password", from)).status).toBe(401);
  expect((await login(c.apiUrl(), u.userName, "wrong-password", from)).status).toBe(429);
}, 60_000);

test("X-Forwarded-For from a peer that is not a trusted proxy is ignored", async () => {
  // A second api on the same cluster that trusts only a proxy the test is not.
  const api = new ApiServer({
    config: { ...c.config, trustedProxies: ["10.99.0.0/16"] },
    log: c.log,
    discovery: c.discovery(),
    instanceId: newInstanceId("api"),
  });
  await api.start();
  c.track(api);
  const base = `http://127.0.0.1:${api.port}`;
  const u = await registerUser(base, uniqueName("xff"), "right-password");
  // Locked out from 127.0.0.1 (the socket peer) with forged, changing X-Forwarded-For headers:
  // they all count against the peer.
  const statuses: number[] = [];
  for (let i = 0; i <= c.config.loginMaxFailures; i++) statuses.push((await login(base, u.userName, "wrong-password", `203.0.113.${i + 1}`)).status);
  expect(statuses).toEqual([...Array(c.config.loginMaxFailures).fill(401), 429]);
  expect((await login(base, u.userName, "right-password", "203.0.113.99")).status).toBe(429);
  // The first api, which trusts 127.0.0.1, believes the header: a fresh address gets in.
  expect((await login(c.apiUrl(), u.userName, "right-password", "203.0.113.99")).status).toBe(200);
});

test("50 concurrent registrations of one name: one 201, the rest 409 or 429 with Retry-After, no 503", async () => {
  const name = uniqueName("race");
  const res = await Promise.all(
    Array.from({ length: 50 }, () =>
      fetch(`${c.apiUrl()}/api/users`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-forwarded-for": "198.51.100.40" },
        body: JSON.stringify({ userName: name, password: "correct-horse-1" }),
      }),
    ),
  );
  const statuses = res.map((r) => r.status);
  const count = (s: number) => statuses.filter((x) => x === s).length;
  expect(count(201)).toBe(1);
  expect(count(201) + count(409) + count(429)).toBe(50);
  expect(count(429)).toBeGreaterThan(0); // 50 > IM_HASH_CONCURRENCY + IM_HASH_QUEUE (half the cores + 16)
  for (const r of res.filter((r) => r.status === 429)) {
    expect(Number(r.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(((await r.json()) as { error: { code: string } }).error.code).toBe("RATE_LIMITED");
  }
}, 60_000);

test("per client address, logins and registrations together are limited whatever the names", async () => {
  const small = await startCluster({ logic: 1, api: 1, config: { trustedProxies: ["127.0.0.1"], authAddrLimit: 4 } });
  try {
    const from = "198.51.100.50";
    const register = (name: string, addr: string) =>
      fetch(`${small.apiUrl()}/api/users`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-forwarded-for": addr },
        body: JSON.stringify({ userName: name, password: "correct-horse-1" }),
      });
    expect((await register(uniqueName("a"), from)).status).toBe(201);
    expect((await register(uniqueName("a"), from)).status).toBe(201);
    expect((await login(small.apiUrl(), uniqueName("nobody"), "wrong-password", from)).status).toBe(401);
    expect((await login(small.apiUrl(), uniqueName("nobody"), "wrong-password", from)).status).toBe(401);
    const over = await register(uniqueName("a"), from);
    expect(over.status).toBe(429);
    expect(Number(over.headers.get("retry-after"))).toBeGreaterThan(0);
    expect((await login(small.apiUrl(), uniqueName("nobody"), "wrong-password", from)).status).toBe(429);
    // Another address is unaffected.
    expect((await register(uniqueName("b"), "198.51.100.51")).status).toBe(201);
  } finally {
    await small.stop();
  }
}, 60_000);
