// The OpenAPI document lists every endpoint of CONTRACT.md v1.1's HTTP API table, with the
// request schemas the routes validate with.
import { expect, test } from "bun:test";
import { Registry } from "prom-client";
import { silentLogger } from "../shared/log.ts";
import { createApiApp } from "./app.ts";

/** CONTRACT.md v1.1, "HTTP API" table: method and path of every row ({…} as OpenAPI writes path parameters). */
const CONTRACT_ENDPOINTS = [
  "post /api/users",
  "post /api/sessions",
  "delete /api/sessions/current",
  "get /api/me",
  "post /api/rooms/{roomId}/messages",
  "post /api/users/{userId}/messages",
  "get /api/rooms/{roomId}",
  "get /api/conversations",
  "get /api/conversations/{conv}/messages",
  "get /api/users",
  "put /api/conversations/{conv}/read",
  "get /api/gateway",
  "get /healthz",
];
/** The rows of that table whose auth column is "token". */
const TOKEN_ENDPOINTS = CONTRACT_ENDPOINTS.filter((e) => !["post /api/users", "post /api/sessions", "get /api/gateway", "get /healthz"].includes(e));
// GET /readyz and GET /metrics are served on every role's internal ops port (README "Deployment"),
// not on the public api port this document describes.

const app = createApiApp({ logic: {} as never, log: silentLogger, registry: new Registry(), instanceId: "t", gateway: () => undefined, ready: () => true });
const get = (path: string) => app.handle(new Request(`http://localhost${path}`));

test("/api/openapi.json is an OpenAPI 3 document with every contract endpoint", async () => {
  const res = await get("/api/openapi.json");
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toContain("application/json");
  const doc = (await res.json()) as { openapi: string; paths: Record<string, Record<string, any>> };
  expect(doc.openapi).toMatch(/^3\./);
  const listed = new Set(Object.entries(doc.paths).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m} ${p}`)));
  expect(CONTRACT_ENDPOINTS.filter((e) => !listed.has(e))).toEqual([]);
  // Documented request bodies come from the routes' schemas.
  expect(doc.paths["/api/conversations/{conv}/read"].put.requestBody.content["application/json"].schema).toMatchObject({
    type: "object",
    required: ["seq"],
    properties: { seq: { type: "number", minimum: 0, multipleOf: 1 } },
  });
  const credentials = doc.paths["/api/users"].post.requestBody.content["application/json"].schema;
  expect(credentials.required).toEqual(["userName", "password"]);
  // No "error" keyword (request.ts BodyString's message for Elysia): OpenAPI has none. The length
  // rules are descriptions (they count code points), not minLength/maxLength.
  expect(credentials.properties).toEqual({
    userName: { type: "string", description: "3-32 characters of A-Z a-z 0-9 _ . - (compared case-insensitively)" },
    password: { type: "string", description: "8-128 characters" },
  });
  const send = doc.paths["/api/rooms/{roomId}/messages"].post.requestBody.content["application/json"].schema;
  expect(send.required).toEqual(["body"]);
  expect(send.properties.body).toEqual({ type: "string", description: "1-4000 characters (Unicode code points); otherwise 400 BAD_REQUEST" });
  expect(send.properties.clientMsgId.description).toStartWith("1-64 characters; a send repeating one of the sender's clientMsgIds within 24 h");
  expect(doc.paths["/api/users"].get.parameters).toContainEqual(expect.objectContaining({ name: "name", in: "query", required: true }));
  expect(doc.paths["/api/rooms/{roomId}/messages"].post.parameters).toContainEqual(expect.objectContaining({ name: "roomId", in: "path" }));
});

test("every documented operation is a route the app serves", async () => {
  const doc = (await (await get("/api/openapi.json")).json()) as { paths: Record<string, Record<string, unknown>> };
  const routes = new Set(app.routes.map((r) => `${r.method.toLowerCase()} ${r.path.replace(/:(\w+)/g, "{$1}")}`));
  const documented = Object.entries(doc.paths).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m} ${p}`));
  expect(documented.filter((d) => !routes.has(d))).toEqual([]);
});

test("every operation has a summary and a 2xx response; token routes declare the bearer token, the others do not", async () => {
  const doc = (await (await get("/api/openapi.json")).json()) as {
    components: { securitySchemes: Record<string, unknown> };
    paths: Record<string, Record<string, { summary?: string; security?: unknown; responses?: Record<string, any> }>>;
  };
  expect(doc.components.securitySchemes.bearer).toEqual({ type: "http", scheme: "bearer" });
  const ops = Object.entries(doc.paths).flatMap(([p, byMethod]) => Object.entries(byMethod).map(([m, op]) => ({ name: `${m} ${p}`, op })));
  expect(ops.length).toBe(CONTRACT_ENDPOINTS.length);
  for (const { name, op } of ops) {
    const token = TOKEN_ENDPOINTS.includes(name);
    const statuses = Object.keys(op.responses ?? {});
    expect({ name, summary: typeof op.summary, has2xx: statuses.some((s) => /^2\d\d$/.test(s)), security: op.security }).toEqual({
      name,
      summary: "string",
      has2xx: true,
      security: token ? [{ bearer: [] }] : undefined,
    });
    if (token) expect({ name, has401: statuses.includes("401") }).toEqual({ name, has401: true });
  }
});

test("success bodies are the contract's shapes and errors the error envelope", async () => {
  const doc = (await (await get("/api/openapi.json")).json()) as { paths: Record<string, Record<string, { responses: Record<string, any> }>> };
  const schema = (path: string, method: string, status: string) => doc.paths[path][method].responses[status].content["application/json"].schema;
  expect(schema("/api/users", "post", "201").required.sort()).toEqual(["token", "userId", "userName"]);
  expect(schema("/api/rooms/{roomId}/messages", "post", "202").required.sort()).toEqual(["conv", "id", "seq", "ts"]);
  expect(schema("/api/conversations/{conv}/messages", "get", "200").properties.messages.items.required.sort()).toEqual(["body", "conv", "from", "id", "seq", "ts"]);
  expect(schema("/api/conversations/{conv}/read", "put", "200").required).toEqual(["conv", "readSeq"]);
  expect(doc.paths["/api/sessions/current"].delete.responses["204"].content).toBeUndefined();
  const envelope = schema("/api/users", "post", "409");
  expect(envelope.required).toEqual(["error"]);
  expect(envelope.properties.error.required).toEqual(["code", "message"]);
  expect(schema("/api/users", "get", "404")).toEqual(envelope);
});
