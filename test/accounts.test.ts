// Accounts and sessions end to end: api (Elysia) → LogicRPC via the etcd resolver → two logic
// instances → real MariaDB and Redis.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startCluster, type TestCluster } from "./support/cluster.ts";
import { eventually, http, registerUser, uniqueName } from "./support/http.ts";

let c: TestCluster;
let base: string;
beforeAll(async () => {
  c = await startCluster({ logic: 2, api: 1, config: { loginMaxFailures: 5 } });
  base = c.apiUrl();
});
afterAll(() => c?.stop());

describe("register and login", () => {
  test("register returns a working token; duplicate name in another case is 409", async () => {
    const name = uniqueName("Ann");
    const r = await http(base, "POST", "/api/users", { body: { userName: name, password: "password-123" } });
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ userName: name });
    expect(r.body.userId).toBeGreaterThan(0);
    expect(typeof r.body.token).toBe("string");
    const me = await http(base, "GET", "/api/me", { token: r.body.token });
    expect(me).toEqual({ status: 200, body: { userId: r.body.userId, userName: name } });
    const dup = await http(base, "POST", "/api/users", { body: { userName: name.toUpperCase(), password: "password-123" } });
    expect(dup.status).toBe(409);
    expect(dup.body.error.code).toBe("CONFLICT");
  });

  test("login accepts any case and returns the name as registered; bad password is 401", async () => {
    const u = await registerUser(base, uniqueName("Bob"), "s3cret-pass");
    const ok = await http(base, "POST", "/api/sessions", { body: { userName: u.userName.toLowerCase(), password: "s3cret-pass" } });
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({ userId: u.userId, userName: u.userName });
    expect(ok.body.token).not.toBe(u.token);
    const bad = await http(base, "POST", "/api/sessions", { body: { userName: u.userName, password: "wrong-pass" } });
    expect(bad.status).toBe(401);
    expect(bad.body.error.code).toBe("UNAUTHENTICATED");
    const nobody = await http(base, "POST", "/api/sessions", { body: { userName: uniqueName("none"), password: "whatever1" } });
    expect(nobody.status).toBe(401);
  });

  test("repeated failed logins for one name are refused with 429, even with the right password", async () => {
    const u = await registerUser(base, uniqueName("Eve"), "right-password");
    for (let i = 0; i < 5; i++) {
      const r = await http(base, "POST", "/api/sessions", { body: { userName: u.userName, password: "wrong-password" } });
      expect(r.status).toBe(401);
    }
    const locked = await http(base, "POST", "/api/sessions", { body: { userName: u.userName, password: "right-password" } });
    expect(locked.status).toBe(429);
    expect(locked.body.error.code).toBe("RATE_LIMITED");
  });
});

describe("sessions", () => {
  test("several sessions per user; logout revokes only that token", async () => {
    const u = await registerUser(base);
    const second = await http(base, "POST", "/api/sessions", { body: { userName: u.userName, password: "correct-horse-1" } });
    expect((await http(base, "DELETE", "/api/sessions/current", { token: u.token })).status).toBe(204);
    const after = await http(base, "GET", "/api/me", { token: u.token });
    expect(after.status).toBe(401);
    expect(after.body.error.code).toBe("UNAUTHENTICATED");
    expect((await http(base, "GET", "/api/me", { token: second.body.token })).status).toBe(200);
    expect((await http(base, "DELETE", "/api/sessions/current", { token: u.token })).status).toBe(401);
  });

  test("me without, with malformed and with unknown token is 401", async () => {
    expect((await http(base, "GET", "/api/me")).status).toBe(401);
    expect((await http(base, "GET", "/api/me", { headers: { authorization: "Basic abc" } })).status).toBe(401);
    const r = await http(base, "GET", "/api/me", { token: "not-a-real-token" });
    expect(r.status).toBe(401);
    expect(r.body).toEqual({ error: { code: "UNAUTHENTICATED", message: expect.any(String) } });
  });

  test("a token issued through one logic instance is accepted by the other", async () => {
    const u = await registerUser(base);
    // Call each logic instance directly, bypassing the balancer.
    for (const l of c.logic) {
      const [res] = await l.api().authenticate({ tokens: [u.token] });
      expect(res.ok?.userId).toBe(u.userId);
    }
  });

  test("concurrent token checks batched together each get their own token's user", async () => {
    const users = await Promise.all(Array.from({ length: 5 }, () => registerUser(base)));
    const gone = await registerUser(base);
    expect((await http(base, "DELETE", "/api/sessions/current", { token: gone.token })).status).toBe(204);
    // Issued at once, these share the api's authenticate batches (and so logic's answers by position).
    const tokens = [...users.map((u) => u.token), gone.token, "not-a-real-token", "x".repeat(300)];
    const order = Array.from({ length: 4 }, () => tokens).flat().sort(() => Math.random() - 0.5);
    const answers = await Promise.all(order.map((token) => http(base, "GET", "/api/me", { token })));
    const want = (token: string) => {
      const u = users.find((x) => x.token === token);
      return u ? { status: 200, body: { userId: u.userId, userName: u.userName } } : { status: 401, body: { error: { code: "UNAUTHENTICATED", message: expect.any(String) } } };
    };
    expect(answers).toEqual(order.map(want));
  });

  test("an expired session is refused", async () => {
    const short = await startCluster({ logic: 1, api: 1, config: { sessionTtlSec: 1 } });
    try {
      const u = await registerUser(short.apiUrl());
      expect((await http(short.apiUrl(), "GET", "/api/me", { token: u.token })).status).toBe(200);
      await eventually(async () => (await http(short.apiUrl(), "GET", "/api/me", { token: u.token })).status === 401, 5000);
    } finally {
      await short.stop();
    }
  });
});

describe("validation and malformed bodies", () => {
  const cases: [string, unknown][] = [
    ["name too short", { userName: "ab", password: "password1" }],
    ["name too long", { userName: "a".repeat(33), password: "password1" }],
    ["name with bad chars", { userName: "bad name!", password: "password1" }],
    ["password too short", { userName: "validname", password: "short" }],
    ["password too long", { userName: "validname", password: "p".repeat(129) }],
    ["name not a string", { userName: 42, password: "password1" }],
    ["password missing", { userName: "validname" }],
    ["array body", [1, 2]],
    ["null body", null],
  ];
  for (const [label, body] of cases)
    test(`register: ${label} → 400`, async () => {
      const r = await http(base, "POST", "/api/users", { raw: JSON.stringify(body) });
      expect(r.status).toBe(400);
      expect(r.body.error.code).toBe("BAD_REQUEST");
    });

  test("boundary lengths are accepted (3/32-char names, 8/128-char passwords)", async () => {
    // A 3-char name may already exist from an earlier run: 409 also proves it passed validation.
    const short = await http(base, "POST", "/api/users", { body: { userName: Math.random().toString(36).slice(2).padEnd(3, "a").slice(0, 3), password: "12345678" } });
    expect([201, 409]).toContain(short.status);
    const long = await http(base, "POST", "/api/users", { body: { userName: uniqueName("c").padEnd(32, "x"), password: "p".repeat(128) } });
    expect(long.status).toBe(201);
  });

  test("not JSON → 400, huge body → 413, unknown route → 404 envelope", async () => {
    const notJson = await http(base, "POST", "/api/users", { raw: "{not json" });
    expect(notJson.status).toBe(400);
    expect(notJson.body.error.code).toBe("BAD_REQUEST");
    const huge = await http(base, "POST", "/api/users", { raw: JSON.stringify({ userName: "x".repeat(70_000), password: "password1" }) });
    expect(huge.status).toBe(413);
    expect(huge.body.error.code).toBe("PAYLOAD_TOO_LARGE");
    // Over Bun's maxRequestBodySize (1 MiB) Bun refuses it by its Content-Length before bunchat sees
    // the request: 413 with no envelope (README, "HTTP bodies").
    const over = await fetch(`${base}/api/users`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ userName: "x".repeat(1_100_000), password: "password1" }) });
    expect(over.status).toBe(413);
    expect(await over.text()).toBe("");
    const none = await http(base, "GET", "/api/nothing-here");
    expect(none.status).toBe(404);
    expect(none.body.error.code).toBe("NOT_FOUND");
  });

  test("a chunked body (no content-length) is held to the same rules: 413 over 64 KiB, 400 if not JSON, else accepted", async () => {
    const chunked = async (text: string) => {
      const bytes = new TextEncoder().encode(text);
      const body = new ReadableStream<Uint8Array>({
        start(c) {
          for (let i = 0; i < bytes.length; i += 16_384) c.enqueue(bytes.subarray(i, i + 16_384));
          c.close();
        },
      });
      const res = await fetch(`${base}/api/users`, { method: "POST", headers: { "content-type": "application/json" }, body, duplex: "half" } as RequestInit);
      return { status: res.status, body: (await res.json()) as { error?: { code: string } } };
    };
    const huge = await chunked(JSON.stringify({ userName: "x".repeat(70_000), password: "password1" }));
    expect(huge).toMatchObject({ status: 413, body: { error: { code: "PAYLOAD_TOO_LARGE" } } });
    expect(await chunked("{not json")).toMatchObject({ status: 400, body: { error: { code: "BAD_REQUEST" } } });
    expect(await chunked("null")).toMatchObject({ status: 400, body: { error: { code: "BAD_REQUEST" } } });
    expect((await chunked(JSON.stringify({ userName: uniqueName("k"), password: "password1" }))).status).toBe(201);
  });
});

describe("failover", () => {
  test("with one logic instance stopped, requests still succeed through the other", async () => {
    const own = await startCluster({ logic: 2, api: 1 });
    try {
      const u = await registerUser(own.apiUrl());
      await own.stopMember(own.logic[0]);
      for (let i = 0; i < 10; i++) {
        expect((await http(own.apiUrl(), "GET", "/api/me", { token: u.token })).status).toBe(200);
      }
      expect((await registerUser(own.apiUrl())).userId).toBeGreaterThan(0);
      // No logic instance left: a clear 503, quickly, not a hang or a 500.
      await own.stopMember(own.logic[1]);
      const t0 = Date.now();
      const down = await http(own.apiUrl(), "GET", "/api/me", { token: u.token });
      expect(down.status).toBe(503);
      expect(down.body.error.code).toBe("UNAVAILABLE");
      expect(Date.now() - t0).toBeLessThan(6000);
    } finally {
      await own.stop();
    }
  });
});
