// Property-based fuzzing of the HTTP API (issue 10): generated methods, paths (raw, percent-encoded,
// double-encoded, invalid UTF-8), query strings (bad integers, repeated parameters), content types
// and bodies (JSON of any shape, wrong field types, lone surrogates, random bytes, over 64 KiB)
// against a real api + logic. Every request must get a contract status and, when it is not 2xx,
// the {"error":{"code","message"}} envelope with the status of its code; never a 500; the api
// keeps serving a bystander's sends.
import { afterAll, beforeAll, expect, test } from "bun:test";
import fc from "fast-check";
import { ERROR_CODES } from "../src/shared/errors.ts";
import { illFormedPath } from "../src/shared/text.ts";
import { startCluster, type TestCluster } from "./support/cluster.ts";
import { sampleInChunks } from "./support/fuzz.ts";
import { http, registerUser } from "./support/http.ts";

const REQUESTS = Math.max(5_000, Number(process.env.FUZZ_REQUESTS ?? 0));
const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31);
const CONCURRENCY = 8;
/** Statuses the contract gives (503 only when a dependency is slow or down: counted, allowed). */
const CONTRACT_STATUS = new Set([200, 201, 202, 204, 400, 401, 403, 404, 409, 413, 429, 503]);

let c: TestCluster;
const problems: string[] = [];
const onError = (e: unknown) => problems.push(`uncaught in the test process: ${String(e)}`);
beforeAll(async () => {
  process.on("unhandledRejection", onError);
  c = await startCluster({ logic: 1, api: 1, config: { rateLimitPerSec: 1000, rateLimitBurst: 1000, leaseTtlSec: 10 } });
});
afterAll(async () => {
  process.off("unhandledRejection", onError);
  await c?.stop();
});

interface Req {
  method: string;
  path: string;
  auth: "token" | "garbage" | "none";
  type?: string;
  body?: string | Uint8Array;
}

const pctBytes = fc.uint8Array({ minLength: 1, maxLength: 6 }).map((b) => [...b].map((x) => `%${x.toString(16).padStart(2, "0")}`).join(""));
const segment = fc.oneof(
  fc.constantFrom("fuzz-room", "1", "2", "0", "-1", "1.5", "room:fuzz-room", "room%3Afuzz-room", "dm%3A1%3A2", "dm%253A1%253A2", "%E0%A4%A", "%ED%A0%80", "x".repeat(65), "", "..", "%2F"),
  fc.string({ maxLength: 30 }).map(encodeURIComponent),
  pctBytes,
);
const intish = fc.constantFrom("1", "0", "10", "200", "1000", "0x10", "1e3", "-1", "+1", " 1", "1.0", "", "abc", "99999999999999999999");
const query = fc
  .array(fc.tuple(fc.constantFrom("afterSeq", "beforeSeq", "limit", "name", "x", "token"), fc.oneof(intish, fc.string({ maxLength: 10 }).map(encodeURIComponent), pctBytes)), { maxLength: 4 })
  .map((kv) => (kv.length ? `?${kv.map(([k, v]) => `${k}=${v}`).join("&")}` : ""));
const path = fc.oneof(
  fc.constantFrom("/api/users", "/api/sessions", "/api/sessions/current", "/api/me", "/api/conversations", "/api/gateway", "/api/users", "/", "/healthz", "/nope", "/api/"),
  segment.map((s) => `/api/rooms/${s}/messages`),
  segment.map((s) => `/api/users/${s}/messages`),
  segment.map((s) => `/api/rooms/${s}`),
  segment.map((s) => `/api/conversations/${s}/messages`),
  segment.map((s) => `/api/conversations/${s}/read`),
);
const anyJson = fc.oneof(fc.jsonValue({ maxDepth: 4 }), fc.string({ unit: "binary", maxLength: 30 }));
/** Objects whose keys shadow Object.prototype's: `${value}` or String(value) throws on the first two (seed 754618636). */
const protoKeys = fc.constantFrom<unknown>({ toString: true }, { valueOf: 1, toString: null }, { constructor: "x" }, JSON.parse('{"__proto__":{"body":"x"}}'));
const fieldValue = fc.oneof(fc.string({ maxLength: 20 }), fc.string({ unit: "binary", maxLength: 10 }), fc.integer(), fc.boolean(), fc.constant(null), anyJson, protoKeys);
const objectBody = fc
  .record(
    { body: fc.oneof({ weight: 3, arbitrary: fc.constantFrom("hello", "", "x".repeat(4001), "😀") }, { weight: 2, arbitrary: fieldValue }), clientMsgId: fieldValue, userName: fc.oneof(fc.constantFrom("fuzzuser"), fieldValue), password: fieldValue, seq: fieldValue },
    { requiredKeys: ["body"] },
  )
  .map((o) => JSON.stringify(o));
const body = fc.oneof(
  { weight: 4, arbitrary: objectBody },
  { weight: 2, arbitrary: anyJson.map((v) => JSON.stringify(v) ?? "null") },
  { weight: 1, arbitrary: fc.constantFrom('{"body":"A\\ud800B"}', '{"\\udc00":1}', "{", "", "null", '{"body":"hi"}', '{"body":"hi","clientMsgId":"\\ud800"}') },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 100 }) },
  { weight: 1, arbitrary: fc.integer({ min: 65_000, max: 70_000 }).map((n) => JSON.stringify({ body: "x".repeat(n) })) },
);
/** An endpoint of the contract with its method, a plausible path and a JSON body of any shape. */
const plausible: fc.Arbitrary<Req> = fc
  .tuple(
    fc.constantFrom(
      ["POST", "/api/rooms/fuzz-room/messages"],
      ["POST", "/api/users/1/messages"],
      ["GET", "/api/conversations/room:fuzz-room/messages"],
      ["GET", "/api/rooms/fuzz-room"],
      ["GET", "/api/conversations"],
      ["GET", "/api/me"],
      ["PUT", "/api/conversations/room:fuzz-room/read"],
    ),
    query,
    objectBody,
  )
  .map(([[method, p], q, b]) => ({ method, path: p + q, auth: "token" as const, type: "application/json", body: b }));

const anyRequest: fc.Arbitrary<Req> = fc.record({
  method: fc.constantFrom("GET", "POST", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"),
  path: fc.tuple(path, query).map(([p, q]) => p + q),
  auth: fc.constantFrom<Req["auth"]>("token", "token", "garbage", "none"),
  type: fc.oneof(
    { weight: 6, arbitrary: fc.constant("application/json") },
    { weight: 1, arbitrary: fc.constant(undefined) },
    { weight: 3, arbitrary: fc.constantFrom("application/json; charset=utf-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain", "application/xml", "APPLICATION/JSON", "garbage") },
  ),
  body: fc.option(body, { nil: undefined }),
});
const request = fc.oneof(anyRequest, plausible);

const JSON_TYPE = /^application\/json\s*(;|$)/i;
const INT_PARAMS = ["afterSeq", "beforeSeq", "limit"];

/** Why the contract (v1.1) refuses this request whatever else it holds, or undefined. */
function mustFail(r: Req): string | undefined {
  if (["POST", "PUT", "PATCH"].includes(r.method)) {
    if (!JSON_TYPE.test(r.type ?? "")) return "a body that is not application/json";
    if (typeof r.body === "string") {
      let v: unknown;
      try {
        v = JSON.parse(r.body);
      } catch {
        return "a body that is not JSON";
      }
      if (illFormedPath(v)) return "a lone surrogate";
    }
  }
  const url = new URL(r.path, "http://x");
  if (r.method !== "GET" || !/^\/api\/conversations\/[^/]+\/messages$/.test(url.pathname)) return undefined;
  for (const k of INT_PARAMS) {
    const all = url.searchParams.getAll(k);
    if (all.length > 1) return `${k} twice`;
    if (all.length === 1 && all[0] !== "" && !/^\d+$/.test(all[0])) return `${k}=${all[0]}`;
  }
  return undefined;
}

test(`${REQUESTS} generated requests get contract answers; the api keeps serving (seed ${SEED})`, async () => {
  const base = c.apiUrl();
  const me = await registerUser(base);
  const bystander = await registerUser(base);
  const reqs = sampleInChunks(request, REQUESTS, SEED);
  const statuses = new Map<number, number>();
  const unavailable: string[] = [];
  let next = 0;
  const one = async (r: Req) => {
    const headers: Record<string, string> = {};
    // Logging the fuzz user out would turn the rest into 401s: DELETE never carries its token.
    if (r.auth === "token" && r.method !== "DELETE") headers.authorization = `Bearer ${me.token}`;
    if (r.auth === "garbage") headers.authorization = "Bearer not-a-token";
    if (r.type) headers["content-type"] = r.type;
    const hasBody = r.body !== undefined && r.method !== "GET";
    const res = await fetch(base + r.path, { method: r.method, headers, body: hasBody ? r.body : undefined });
    const text = await res.text();
    statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
    const what = `${r.method} ${r.path} ${r.type ?? "-"} ${typeof r.body === "string" ? JSON.stringify(r.body.slice(0, 100)) : r.body ? `bytes:${r.body.length}` : "-"} → ${res.status} ${text.slice(0, 200)}`;
    if (!CONTRACT_STATUS.has(res.status)) return void problems.push(`status: ${what}`);
    if (res.status === 503 && unavailable.length < 5) unavailable.push(what);
    const wrong = mustFail(r);
    if (wrong && res.status < 300) problems.push(`accepted ${wrong}: ${what}`);
    if (res.status < 300) return;
    let code: unknown;
    try {
      code = (JSON.parse(text) as { error: { code: unknown; message: unknown } }).error.code;
    } catch {
      return void problems.push(`no error envelope: ${what}`);
    }
    const known = ERROR_CODES[code as keyof typeof ERROR_CODES];
    if (!known || known.http !== res.status) problems.push(`code ${String(code)} for status ${res.status}: ${what}`);
  };
  const worker = async () => {
    for (let r = reqs.next(); !r.done && problems.length < 20; r = reqs.next()) {
      next++;
      await one(r.value);
    }
  };
  const started = Date.now();
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const ms = Date.now() - started;
  console.log(JSON.stringify({ fuzz: "http", seed: SEED, requests: next, ms, statuses: Object.fromEntries(statuses), unavailable }));
  expect(problems).toEqual([]);
  expect(statuses.get(500) ?? 0).toBe(0);
  // The api still serves others.
  const sent = await http(base, "POST", "/api/rooms/fuzz-bystander/messages", { token: bystander.token, body: { body: "still here" } });
  expect(sent.status).toBe(202);
  expect((await fetch(`${base}/healthz`)).status).toBe(200);
});
