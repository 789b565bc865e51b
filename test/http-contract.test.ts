// Issue 10 items 5 and 6 against a real api + logic (Redis, MariaDB, etcd): the v1.1 input rules
// of the HTTP API, each bug with its right answer, and the metrics' status label.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startCluster, type TestCluster } from "./support/cluster.ts";
import { http, registerUser, uniqueName } from "./support/http.ts";

let c: TestCluster;
let base: string;
beforeAll(async () => {
  c = await startCluster({ logic: 1, api: 1 });
  base = c.apiUrl();
});
afterAll(() => c?.stop());

const raw = (path: string, init: RequestInit = {}) => fetch(base + path, init);
const code = async (res: Response) => ((await res.json()) as { error: { code: string } }).error.code;

describe("bodies (v1.1)", () => {
  test("a plain DELETE /api/sessions/current, without body or content type, is 204 and ends that token", async () => {
    const u = await registerUser(base);
    const res = await raw("/api/sessions/current", { method: "DELETE", headers: { authorization: `Bearer ${u.token}` } });
    expect(res.status).toBe(204);
    expect((await http(base, "GET", "/api/me", { token: u.token })).status).toBe(401);
  });

  test("an endpoint without a request body ignores any body and content type", async () => {
    for (const [type, body] of [["application/json", "not json"], ["text/plain", "x"], ["application/x-www-form-urlencoded", "a=1"], ["application/json", "null"]]) {
      const u = await registerUser(base);
      const res = await raw("/api/sessions/current", { method: "DELETE", headers: { authorization: `Bearer ${u.token}`, "content-type": type }, body });
      expect(res.status).toBe(204);
    }
  });

  test("form, multipart and text bodies are 400 BAD_REQUEST, even when they hold the right fields", async () => {
    const u = await registerUser(base);
    const auth = { authorization: `Bearer ${u.token}` };
    const path = `/api/rooms/${uniqueName("r")}/messages`;
    const form = new FormData();
    form.set("body", "hi");
    const cases: RequestInit[] = [
      { body: new URLSearchParams({ body: "hi" }), headers: auth },
      { body: form, headers: auth },
      { body: JSON.stringify({ body: "hi" }), headers: { ...auth, "content-type": "text/plain" } },
      { body: JSON.stringify({ body: "hi" }), headers: { ...auth, "content-type": "application/jsonx" } },
      { body: JSON.stringify({ body: "hi" }), headers: auth },
    ];
    for (const init of cases) {
      const res = await raw(path, { method: "POST", ...init });
      expect(res.status).toBe(400);
      expect(res.headers.get("content-type")).toBe("application/json;charset=utf-8");
      expect(await code(res)).toBe("BAD_REQUEST");
    }
    const creds = new URLSearchParams({ userName: uniqueName(), password: "correct-horse-1" });
    expect((await raw("/api/users", { method: "POST", body: creds })).status).toBe(400);
    const ok = await raw(path, { method: "POST", body: JSON.stringify({ body: "hi" }), headers: { ...auth, "content-type": "application/json; charset=utf-8" } });
    expect(ok.status).toBe(202);
    // Answers and errors carry the one JSON content type.
    expect(ok.headers.get("content-type")).toBe("application/json;charset=utf-8");
  });

  test("a body nested deeper than 32 levels is 400, as a WebSocket frame; 32 is read", async () => {
    const auth = { authorization: `Bearer ${(await registerUser(base)).token}` };
    const nested = (levels: number) => `{"body":"hi","x":${"[".repeat(levels - 1)}${"]".repeat(levels - 1)}}`;
    const send = (text: string) => raw(`/api/rooms/${uniqueName("deep")}/messages`, { method: "POST", body: text, headers: { ...auth, "content-type": "application/json" } });
    const deep = await send(nested(33));
    expect(deep.status).toBe(400);
    expect(await code(deep)).toBe("BAD_REQUEST");
    expect((await send(nested(32))).status).toBe(202);
    expect((await send(nested(30_000))).status).toBe(400);
  });

  test("JSON that is not an object is 400", async () => {
    for (const body of ["null", "0", "false", '""', "[]", "[1]"]) {
      const res = await http(base, "POST", "/api/sessions", { raw: body });
      expect(res.status).toBe(400);
    }
  });
  test("a field holding an object that cannot be turned into text ({toString: true}) is 400, not 500", async () => {
    // Found by fuzz-http (seed 754618636): Elysia's validation message interpolated the value.
    const u = await registerUser(base);
    const odd = { toString: true, valueOf: 1 };
    const cases: [string, string | undefined, unknown][] = [
      [`/api/rooms/${uniqueName("r")}/messages`, u.token, { body: odd }],
      [`/api/users/${u.userId}/messages`, u.token, { body: "hi", clientMsgId: odd }],
      ["/api/users", undefined, { userName: odd, password: "correct-horse-1" }],
      ["/api/sessions", undefined, { userName: u.userName, password: odd }],
    ];
    for (const [path, token, body] of cases) {
      const res = await raw(path, { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) } });
      expect(res.status).toBe(400);
      expect(await code(res)).toBe("BAD_REQUEST");
    }
  });
});

describe("schema errors", () => {
  test("a 400 for a body or query that fails the endpoint's schema names the field", async () => {
    const u = await registerUser(base);
    const auth = { authorization: `Bearer ${u.token}` };
    const msg = async (res: Response) => {
      expect(res.status).toBe(400);
      const e = ((await res.json()) as { error: { code: string; message: string } }).error;
      expect(e.code).toBe("BAD_REQUEST");
      return e.message;
    };
    const conv = encodeURIComponent(`room:${uniqueName("r")}`);
    for (const seq of ["zz9", -1, 1.5]) {
      const res = await raw(`/api/conversations/${conv}/read`, { method: "PUT", body: JSON.stringify({ seq }), headers: { "content-type": "application/json", ...auth } });
      const m = await msg(res);
      expect(m).toStartWith("request does not match the expected shape: body.seq: ");
      expect(m).not.toContain("zz9"); // the rule, never the value
    }
    expect(await msg(await raw("/api/users", { headers: auth }))).toStartWith("request does not match the expected shape: query.name: ");
    const odd = await raw(`/api/rooms/${uniqueName("r")}/messages`, { method: "POST", body: JSON.stringify({ body: { toString: true } }), headers: { "content-type": "application/json", ...auth } });
    expect(await msg(odd)).toStartWith("request does not match the expected shape: body.body: ");
  });
});

describe("text (v1.1)", () => {
  test("a lone surrogate anywhere in a body is 400 BAD_REQUEST and nothing is stored", async () => {
    const u = await registerUser(base);
    const r = uniqueName("r");
    for (const body of ['{"body":"A\\ud800B"}', '{"body":"ok","clientMsgId":"\\udc00"}', '{"body":"ok","\\ud800":1}']) {
      const res = await http(base, "POST", `/api/rooms/${r}/messages`, { token: u.token, raw: body });
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe("BAD_REQUEST");
    }
    const name = uniqueName();
    for (const body of [`{"userName":"${name}\\ud800","password":"correct-horse-1"}`, `{"userName":"${name}","password":"correct-horse\\udfff"}`]) {
      expect((await http(base, "POST", "/api/users", { raw: body })).status).toBe(400);
      expect((await http(base, "POST", "/api/sessions", { raw: body })).status).toBe(400);
    }
    const hist = await http(base, "GET", `/api/conversations/room:${r}/messages`, { token: u.token });
    expect(hist.body.messages).toEqual([]);
    // A surrogate pair is one valid character.
    const pair = await http(base, "POST", `/api/rooms/${r}/messages`, { token: u.token, raw: '{"body":"\\ud83d\\ude00"}' });
    expect(pair.status).toBe(202);
  });

  test("percent-encoding that is not UTF-8 (a surrogate, a cut sequence) is 400 in a path or query", async () => {
    const u = await registerUser(base);
    for (const path of ["/api/rooms/%ED%A0%80", "/api/rooms/%E0%A4%A", "/api/conversations/room%3A%ED%A0%80/messages", "/api/me?x=%ff"]) {
      const res = await http(base, "GET", path, { token: u.token });
      expect([path, res.status]).toEqual([path, 400]);
    }
  });
});

describe("paths and query parameters (v1.1)", () => {
  test("{conv} is percent-decoded exactly once", async () => {
    const a = await registerUser(base);
    const b = await registerUser(base);
    const sent = await http(base, "POST", `/api/users/${b.userId}/messages`, { token: a.token, body: { body: "hi" } });
    const conv: string = sent.body.conv;
    const once = await http(base, "GET", `/api/conversations/${encodeURIComponent(conv)}/messages`, { token: a.token });
    expect(once.status).toBe(200);
    expect(once.body.messages.map((m: { body: string }) => m.body)).toEqual(["hi"]);
    expect((await http(base, "GET", `/api/conversations/${conv}/messages`, { token: a.token })).status).toBe(200);
    const twice = await http(base, "GET", `/api/conversations/${encodeURIComponent(encodeURIComponent(conv))}/messages`, { token: a.token });
    expect(twice.status).toBe(400);
  });

  test("integer parameters are plain decimal digits; anything else, or a parameter given twice, is 400", async () => {
    const u = await registerUser(base);
    const r = uniqueName("r");
    for (let i = 0; i < 3; i++) await http(base, "POST", `/api/rooms/${r}/messages`, { token: u.token, body: { body: `m${i}` } });
    const get = (q: string) => http(base, "GET", `/api/conversations/room:${r}/messages${q}`, { token: u.token });
    for (const q of ["?limit=0x10", "?limit=1e3", "?limit=-1", "?limit=+5", "?limit=%205", "?limit=1.0", "?afterSeq=0b1", "?limit=1&limit=2", "?afterSeq=1&afterSeq=1", "?beforeSeq=3&beforeSeq=2"]) {
      const res = await get(q);
      expect([q, res.status]).toEqual([q, 400]);
      expect(res.body.error.code).toBe("BAD_REQUEST");
    }
    const ok = await get("?limit=2&afterSeq=0");
    expect(ok.status).toBe(200);
    expect(ok.body.messages.map((m: { seq: number }) => m.seq)).toEqual([1, 2]);
  });
});

describe("metrics (item 6)", () => {
  test("the status label is the real status: 201, 202, 204, 400, 401, 404 — and no 500 for a wrong password", async () => {
    const u = await registerUser(base); // 201
    await http(base, "POST", `/api/rooms/${uniqueName("r")}/messages`, { token: u.token, body: { body: "x" } }); // 202
    await http(base, "POST", "/api/sessions", { body: { userName: u.userName, password: "wrong-password" } }); // 401
    await http(base, "POST", "/api/sessions", { raw: "{" }); // 400
    await http(base, "GET", "/api/nope"); // 404
    await raw("/api/sessions/current", { method: "DELETE", headers: { authorization: `Bearer ${u.token}` } }); // 204
    // /metrics is on the api's internal ops port (the public port serves none).
    expect((await raw("/metrics")).status).toBe(404);
    const text = await (await fetch(`http://127.0.0.1:${c.api[0].metricsPort}/metrics`)).text();
    const count = (route: string, status: number) => {
      const m = new RegExp(`^bunchat_api_requests_total\\{[^}]*route="${route.replace(/[/]/g, "\\/")}"[^}]*status="${status}"[^}]*\\} (\\d+)`, "m").exec(text)
        ?? new RegExp(`^bunchat_api_requests_total\\{[^}]*status="${status}"[^}]*route="${route.replace(/[/]/g, "\\/")}"[^}]*\\} (\\d+)`, "m").exec(text);
      return m ? Number(m[1]) : 0;
    };
    expect(count("/api/users", 201)).toBeGreaterThanOrEqual(1);
    expect(count("/api/rooms/:roomId/messages", 202)).toBeGreaterThanOrEqual(1);
    expect(count("/api/sessions", 401)).toBeGreaterThanOrEqual(1);
    expect(count("/api/sessions", 400)).toBeGreaterThanOrEqual(1);
    expect(count("/api/sessions/current", 204)).toBeGreaterThanOrEqual(1);
    expect(count("/api/sessions", 500)).toBe(0);
    expect(text).toMatch(/bunchat_api_requests_total\{[^}]*status="404"/);
    expect(text).not.toMatch(/bunchat_api_requests_total\{[^}]*status="500"/);
  });
});
