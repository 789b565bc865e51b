// The HTTP API (CONTRACT.md "HTTP API") as an Elysia app. Bodies are checked against schemas
// here; semantic rules (lengths, patterns, access) live in logic, the one authority for HTTP and
// WebSocket alike. Every error leaves as {"error":{"code","message"}} with the catalog's status.
import { Elysia, t } from "elysia";
import { Counter, Histogram, type Registry } from "prom-client";
import { AppError, badRequest, errorResponse, type ErrorCode } from "../shared/errors.ts";
import { LIMITS } from "../shared/protocol.ts";
import type { Logger } from "../shared/log.ts";
import { opsResponse } from "../shared/ops.ts";
import type { Client } from "../shared/rpc.ts";
import { Batcher } from "../shared/batcher.ts";
import type { LogicApi, SendAck, SendReq, Session } from "../../proto/logic.ts";
import { contentSecurityPolicy, webAssets } from "./web/build.ts";
import { chatRoutes } from "./chat-routes.ts";
import { withOpenApi } from "./openapi.ts";

export interface ApiDeps {
  logic: Client<LogicApi>;
  log: Logger;
  registry: Registry;
  instanceId: string;
  /** ws URL of the least-loaded live connect instance, or undefined if none. */
  gateway: () => string | undefined;
  ready: () => boolean;
  /** ws origins (ws://host:port) of the live connect instances, for the web page's connect-src. */
  wsOrigins?: () => string[];
}


const json = (status: number, body: unknown) =>
  new Response(body === null ? null : JSON.stringify(body), { status, headers: body === null ? {} : { "content-type": "application/json" } });

const fail = (code: ErrorCode, message: string) => errorResponse(new AppError(code, message));

const Credentials = t.Object({ userName: t.String(), password: t.String() });
const SendBody = t.Object({ body: t.String(), clientMsgId: t.Optional(t.String()) });

/** Parses an optional non-negative integer query parameter. */
function intParam(q: Record<string, string | undefined>, name: string): number | undefined {
  const v = q[name];
  if (v === undefined || v === "") return undefined;
  if (!/^\d{1,15}$/.test(v)) throw badRequest(`${name} must be a non-negative integer`);
  return Number(v);
}

export function createApiApp(deps: ApiDeps) {
  const { logic, log, registry } = deps;
  const requests = new Counter({ name: "bunchat_api_requests_total", help: "HTTP requests", labelNames: ["route", "status"], registers: [registry] });
  const latency = new Histogram({
    name: "bunchat_api_request_seconds",
    help: "HTTP request latency",
    labelNames: ["route"],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [registry],
  });
  // Hot paths batch: every token check and every send of this process shares a few RPCs.
  const auth = new Batcher<string, Session>((tokens) => logic.authenticate({ tokens }, { retries: 2 }), { concurrency: 4 });
  const send = new Batcher<SendReq, SendAck>((items) => logic.send({ items }, { retries: 2 }), { concurrency: 4, lingerMs: 1 });
  let sendNo = 0;

  const user = async (req: Request): Promise<Session & { token: string }> => {
    const h = req.headers.get("authorization") ?? "";
    const m = /^Bearer\s+(\S+)$/i.exec(h);
    if (!m) throw new AppError("UNAUTHENTICATED", "missing bearer token");
    return { ...(await auth.call(m[1])), token: m[1] };
  };
  const sendAs = async (req: Request, target: { room: string } | { toUserId: number }, b: { body: string; clientMsgId?: string }) => {
    const u = await user(req);
    return json(
      202,
      await send.call({ from: { userId: u.userId, userName: u.userName }, ...target, body: b.body, clientMsgId: b.clientMsgId, retryKey: `${deps.instanceId}:${++sendNo}` }),
    );
  };

  const app = new Elysia()
    .onRequest(({ request }) => {
      const len = Number(request.headers.get("content-length") ?? 0);
      if (len > LIMITS.maxHttpBody) return fail("PAYLOAD_TOO_LARGE", `request body over ${LIMITS.maxHttpBody} bytes`);
    })
    // A body that does not say its length (chunked) is read here, so one over the limit is refused
    // with 413 like any other; bodies with a content-length go to Elysia's parser.
    .onParse(async ({ request }) => {
      if (request.headers.has("content-length")) return;
      const text = await request.text();
      if (Buffer.byteLength(text) > LIMITS.maxHttpBody) throw new AppError("PAYLOAD_TOO_LARGE", `request body over ${LIMITS.maxHttpBody} bytes`);
      let v: unknown;
      try {
        v = JSON.parse(text);
      } catch {
        throw new AppError("BAD_REQUEST", "request body is not valid JSON");
      }
      // Every body here is an object; a falsy value would send Elysia on to its own parser.
      if (!v) throw new AppError("BAD_REQUEST", "request does not match the expected shape");
      return v;
    })
    .onAfterResponse(({ request, route, set }) => {
      requests.inc({ route: route || "unmatched", status: String(set.status ?? 200) });
      void request;
    })
    .onError(({ code, error, path }) => {
      if (error instanceof AppError) return errorResponse(error);
      // Elysia wraps what a parse hook throws (ours: 413 for a chunked body) in a ParseError.
      const cause = (error as { cause?: unknown }).cause;
      if (code === "PARSE" && cause instanceof AppError) return errorResponse(cause);
      if (code === "VALIDATION") return fail("BAD_REQUEST", "request does not match the expected shape");
      if (code === "PARSE") return fail("BAD_REQUEST", "request body is not valid JSON");
      if (code === "NOT_FOUND") return fail("NOT_FOUND", "no such endpoint");
      const status = (error as { status?: number }).status;
      if (status === 413) return fail("PAYLOAD_TOO_LARGE", `request body over ${LIMITS.maxHttpBody} bytes`);
      log.error("unhandled api error", { path, code, err: error });
      return fail("INTERNAL", "internal error");
    })
    // The web app (src/api/web), bundled at start; the page may only talk to us and the connect tier.
    .get("/", async () => web("html", "text/html; charset=utf-8", { "content-security-policy": contentSecurityPolicy(deps.wsOrigins?.() ?? []) }))
    .get("/app.js", () => web("js", "text/javascript; charset=utf-8"), { detail: { hide: true } })
    .get("/app.css", () => web("css", "text/css; charset=utf-8"), { detail: { hide: true } })
    .get("/favicon.svg", () => web("icon", "image/svg+xml"), { detail: { hide: true } })
    .get("/healthz", ({ request }) => opsResponse(request, registry, deps.ready))
    .get("/metrics", ({ request }) => opsResponse(request, registry, deps.ready))
    .post("/api/users", async ({ body }) => json(201, await timed(latency, "register", () => logic.register(body))), { body: Credentials })
    .post("/api/sessions", async ({ body }) => json(200, await timed(latency, "login", () => logic.login(body))), { body: Credentials })
    .delete("/api/sessions/current", async ({ request }) => {
      const u = await user(request);
      await logic.logout({ token: u.token });
      return json(204, null);
    })
    .get("/api/me", async ({ request }) => {
      const u = await timed(latency, "me", () => user(request));
      return json(200, { userId: u.userId, userName: u.userName });
    })
    .post("/api/rooms/:roomId/messages", ({ request, params, body }) => timed(latency, "send", () => sendAs(request, { room: params.roomId }, body)), {
      body: SendBody,
    })
    .post(
      "/api/users/:userId/messages",
      ({ request, params, body }) => {
        if (!/^[1-9]\d{0,15}$/.test(params.userId)) throw badRequest("userId must be a positive integer");
        return timed(latency, "send", () => sendAs(request, { toUserId: Number(params.userId) }, body));
      },
      { body: SendBody },
    )
    .get("/api/rooms/:roomId", async ({ request, params }) => {
      await user(request);
      return json(200, await logic.roomInfo({ room: params.roomId }));
    })
    .get("/api/conversations", async ({ request }) => {
      const u = await user(request);
      return json(200, await logic.conversations({ userId: u.userId }));
    })
    .get("/api/conversations/:conv/messages", async ({ request, params, query }) => {
      const u = await user(request);
      const limit = query.limit === undefined || query.limit === "" ? undefined : Number(query.limit);
      if (limit !== undefined && !Number.isSafeInteger(limit)) throw badRequest("limit must be an integer");
      const res = await timed(latency, "history", () =>
        logic.history({
          userId: u.userId,
          conv: safeDecode(params.conv),
          afterSeq: intParam(query, "afterSeq"),
          beforeSeq: intParam(query, "beforeSeq"),
          limit,
          maxLimit: LIMITS.historyMaxLimit,
        }),
      );
      return json(200, res);
    })
    .get("/api/gateway", () => {
      const wsUrl = deps.gateway();
      if (!wsUrl) throw new AppError("UNAVAILABLE", "no connect instance is available");
      return json(200, { wsUrl });
    })
    .use(chatRoutes({ logic, user }));
  return withOpenApi(app);
}

async function web(part: "html" | "js" | "css" | "icon", type: string, headers: Record<string, string> = {}): Promise<Response> {
  const body = (await webAssets())[part];
  return new Response(body, { headers: { "content-type": type, "cache-control": "no-cache", "x-content-type-options": "nosniff", ...headers } });
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw badRequest("malformed percent-encoding in conv");
  }
}

async function timed<T>(h: Histogram<"route">, route: string, fn: () => Promise<T>): Promise<T> {
  const end = h.startTimer({ route });
  try {
    return await fn();
  } finally {
    end();
  }
}
