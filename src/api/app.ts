// The HTTP API (CONTRACT.md "HTTP API") as an Elysia app. Bodies are checked against schemas
// here; semantic rules (lengths, patterns, access) live in logic, the one authority for HTTP and
// WebSocket alike. Every error leaves as {"error":{"code","message"}} with the catalog's status.
import { Elysia, t } from "elysia";
import { Counter, type Registry } from "prom-client";
import { AppError, badRequest, errorResponse, type ErrorCode } from "../shared/errors.ts";
import { LIMITS } from "../shared/protocol.ts";
import type { Logger } from "../shared/log.ts";
import { errorCounter, healthResponse } from "../shared/ops.ts";
import { instrumentClient } from "../shared/rpc-metrics.ts";
import { LogicService } from "../../proto/logic.ts";
import type { Client } from "../shared/rpc.ts";
import { Batcher } from "../shared/batcher.ts";
import { TallyHistogram } from "../shared/tally.ts";
import { answerInTime, sendBatcher } from "../shared/send-deadline.ts";
import type { LogicApi, Session } from "../../proto/logic.ts";
import { BodyString, checkUrl, intQuery, json, pathSegment, readBody, shapeMessage } from "./request.ts";
import { clientAddressResolver } from "./client-addr.ts";
import { chatRoutes } from "./chat-routes.ts";
import { withOpenApi } from "./openapi.ts";
import { ConversationsSchema, GatewaySchema, HistorySchema, RoomInfoSchema, SendAckSchema, SessionGrantSchema, UserRefSchema, doc, healthDoc } from "./api-docs.ts";
import { contentSecurityPolicy, webAssets } from "./web/build.ts";

export interface ApiDeps {
  logic: Client<LogicApi>;
  log: Logger;
  registry: Registry;
  instanceId: string;
  /** ws URL to hand out (IM_PUBLIC_WS_URL, or the least-loaded ready connect instance's), or undefined if none is ready. */
  gateway: () => string | undefined;
  ready: () => boolean;
  /** IM_TRUSTED_PROXIES: peers whose X-Forwarded-For names the client address (see client-addr.ts). */
  trustedProxies?: readonly string[];
  /** ws origins (ws://host:port) of the live connect instances, for the web page's connect-src. */
  wsOrigins?: () => string[];
  /** IM_SEND_TIMEOUT_MS: a send is answered within this, counted from the request's arrival. */
  sendTimeoutMs?: number;
}

const fail = (code: ErrorCode, message: string) => errorResponse(new AppError(code, message));

/** Register/login wait in logic's hashing pool (at most ~3 s, then 429) before a hash of up to seconds under load. */
const AUTH_CALL = { deadlineMs: 10_000 };

// The length rules are in the descriptions, not in minLength/maxLength: they count Unicode code
// points (logic checks them), where JSON Schema's lengths would count UTF-16 units.
const Credentials = t.Object({
  userName: BodyString({ description: "3-32 characters of A-Z a-z 0-9 _ . - (compared case-insensitively)" }),
  password: BodyString({ description: "8-128 characters" }),
});
const SendBody = t.Object({
  body: BodyString({ description: `1-${LIMITS.maxBodyCodePoints} characters (Unicode code points); otherwise 400 BAD_REQUEST` }),
  clientMsgId: t.Optional(
    BodyString({ description: `1-64 characters; a send repeating one of the sender's clientMsgIds within ${LIMITS.idempotencySec / 3600} h is answered with the first acceptance and stored once` }),
  ),
});
const SEND_ERRORS: ErrorCode[] = ["BAD_REQUEST", "PAYLOAD_TOO_LARGE", "RATE_LIMITED", "UNAVAILABLE"];

export function createApiApp(deps: ApiDeps) {
  const { log, registry } = deps;
  const logic = instrumentClient(LogicService, deps.logic, registry);
  const errors = errorCounter(registry, "api");
  /** Every error response leaves through here, so bunchat_api_errors_total{code} sees each once. */
  const counted = (res: Response, code: ErrorCode) => {
    errors.inc(code);
    return res;
  };
  const failCounted = (code: ErrorCode, message: string) => counted(fail(code, message), code);
  const requests = new Counter({ name: "bunchat_api_requests_total", help: "HTTP requests", labelNames: ["route", "status"], registers: [registry] });
  const latency = new TallyHistogram("bunchat_api_request_seconds", "HTTP request latency", [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1], [registry], ["route"]);
  // Hot paths batch: every token check and every send of this process shares a few RPCs.
  const auth = new Batcher<string, Session>((tokens) => logic.authenticate({ tokens }, { retries: 2 }), { concurrency: 4 });
  const sendTimeoutMs = deps.sendTimeoutMs ?? 5000;
  const send = sendBatcher((req, opts) => logic.send(req, opts), sendTimeoutMs, { concurrency: 4, lingerMs: 1 });
  let sendNo = 0;
  const resolveAddr = clientAddressResolver(deps.trustedProxies ?? []);
  /** Logins and registrations are limited per client address, which logic learns from us. */
  const clientAddr = (req: Request, server: { requestIP(r: Request): { address: string } | null } | null) =>
    resolveAddr(server?.requestIP(req)?.address, req.headers.get("x-forwarded-for"));

  const user = async (req: Request): Promise<Session & { token: string }> => {
    const h = req.headers.get("authorization") ?? "";
    const m = /^Bearer\s+(\S+)$/i.exec(h);
    if (!m) throw new AppError("UNAUTHENTICATED", "missing bearer token");
    return { ...(await auth.call(m[1])), token: m[1] };
  };
  const sendAs = async (req: Request, target: { room: string } | { toUserId: number }, b: { body: string; clientMsgId?: string }) => {
    const at = Date.now();
    const accepted = (async () => {
      const u = await user(req);
      return send.call({ from: { userId: u.userId, userName: u.userName }, ...target, body: b.body, clientMsgId: b.clientMsgId, retryKey: `${deps.instanceId}:${++sendNo}` }, at);
    })();
    accepted.catch(() => undefined); // answered by the race below
    return json(202, await answerInTime(accepted, at, sendTimeoutMs));
  };

  const errorFor = (code: string | number, error: unknown, path: string): Response => {
    if (error instanceof AppError) return counted(errorResponse(error), error.code);
    // Elysia wraps what a parse hook throws (ours: readBody's 400 and 413) in a ParseError.
    const cause = (error as { cause?: unknown }).cause;
    if (code === "PARSE" && cause instanceof AppError) return counted(errorResponse(cause), cause.code);
    if (code === "VALIDATION") {
      const v = error as { type?: unknown; valueError?: { path?: unknown; message?: unknown } };
      return failCounted("BAD_REQUEST", shapeMessage(v.type, v.valueError));
    }
    if (code === "PARSE") return failCounted("BAD_REQUEST", "request body is not valid JSON");
    if (code === "NOT_FOUND") return failCounted("NOT_FOUND", "no such endpoint");
    const status = (error as { status?: number }).status;
    if (status === 413) return failCounted("PAYLOAD_TOO_LARGE", `request body over ${LIMITS.maxHttpBody} bytes`);
    log.error("unhandled api error", { path, code, err: error });
    return failCounted("INTERNAL", "internal error");
  };

  const app = new Elysia()
    .onRequest(({ request }) => {
      const len = Number(request.headers.get("content-length") ?? 0);
      if (len > LIMITS.maxHttpBody) return failCounted("PAYLOAD_TOO_LARGE", `request body over ${LIMITS.maxHttpBody} bytes`);
      try {
        checkUrl(new URL(request.url));
      } catch (e) {
        return counted(errorResponse(e as AppError), (e as AppError).code);
      }
    })
    // Every body is read here, and only here (Elysia's own parsers, which accept forms and text,
    // never run): JSON only, and only for endpoints that take a body (see readBody).
    .onParse(({ request }) => readBody(request))
    .onAfterResponse(({ response, route, set }) => {
      // Handlers return Response objects (their status is on them); onError puts its status in set.
      const status = response instanceof Response ? response.status : (set.status ?? 200);
      requests.inc({ route: route || "unmatched", status: String(status) });
    })
    .onError(({ code, error, path, set }) => {
      const res = errorFor(code, error, path);
      set.status = res.status;
      return res;
    })
    // The web app (src/api/web), bundled at start; the page may only talk to us and the connect tier.
    .get("/", async () => web("html", "text/html; charset=utf-8", { "content-security-policy": contentSecurityPolicy(deps.wsOrigins?.() ?? []) }))
    .get("/app.js", () => web("js", "text/javascript; charset=utf-8"), { detail: { hide: true } })
    .get("/app.css", () => web("css", "text/css; charset=utf-8"), { detail: { hide: true } })
    .get("/favicon.svg", () => web("icon", "image/svg+xml"), { detail: { hide: true } })
    // /healthz stays on the public port for load balancers; /readyz and /metrics are on the internal ops port.
    .get("/healthz", () => healthResponse(deps.ready), { detail: healthDoc })
    .post("/api/users", async ({ body, request, server }) => json(201, await timed(latency, "register", () => logic.register({ ...body, clientAddr: clientAddr(request, server) }, AUTH_CALL))), {
      body: Credentials,
      detail: doc({ summary: "Register a user and log in", ok: [201, SessionGrantSchema], errors: ["BAD_REQUEST", "CONFLICT", "PAYLOAD_TOO_LARGE", "RATE_LIMITED", "UNAVAILABLE"] }),
    })
    .post("/api/sessions", async ({ body, request, server }) => json(200, await timed(latency, "login", () => logic.login({ ...body, clientAddr: clientAddr(request, server) }, AUTH_CALL))), {
      body: Credentials,
      detail: doc({ summary: "Log in", ok: [200, SessionGrantSchema], errors: ["BAD_REQUEST", "UNAUTHENTICATED", "PAYLOAD_TOO_LARGE", "RATE_LIMITED", "UNAVAILABLE"] }),
    })
    .delete(
      "/api/sessions/current",
      async ({ request }) => {
        const u = await user(request);
        await logic.logout({ token: u.token });
        return json(204, null);
      },
      { detail: doc({ summary: "Log out: this token stops working, its WebSockets are closed with 4401", ok: [204], token: true, errors: ["UNAVAILABLE"] }) },
    )
    .get(
      "/api/me",
      async ({ request }) => {
        const u = await timed(latency, "me", () => user(request));
        return json(200, { userId: u.userId, userName: u.userName });
      },
      { detail: doc({ summary: "The user of the token", ok: [200, UserRefSchema], token: true, errors: ["UNAVAILABLE"] }) },
    )
    .post("/api/rooms/:roomId/messages", ({ request, params, body }) => timed(latency, "send", () => sendAs(request, { room: params.roomId }, body)), {
      body: SendBody,
      detail: doc({ summary: "Send a message to a room", ok: [202, SendAckSchema], token: true, errors: SEND_ERRORS }),
    })
    .post(
      "/api/users/:userId/messages",
      ({ request, params, body }) => {
        if (!/^[1-9]\d{0,15}$/.test(params.userId)) throw badRequest("userId must be a positive integer");
        return timed(latency, "send", () => sendAs(request, { toUserId: Number(params.userId) }, body));
      },
      { body: SendBody, detail: doc({ summary: "Send a direct message to a user", ok: [202, SendAckSchema], token: true, errors: [...SEND_ERRORS, "NOT_FOUND"] }) },
    )
    .get(
      "/api/rooms/:roomId",
      async ({ request, params }) => {
        await user(request);
        return json(200, await logic.roomInfo({ room: params.roomId }));
      },
      { detail: doc({ summary: "Who is in a room now", ok: [200, RoomInfoSchema], token: true, errors: ["BAD_REQUEST", "UNAVAILABLE"] }) },
    )
    .get(
      "/api/conversations",
      async ({ request }) => {
        const u = await user(request);
        return json(200, await logic.conversations({ userId: u.userId }));
      },
      { detail: doc({ summary: "The caller's conversations, most recent first, with unread counts", ok: [200, ConversationsSchema], token: true, errors: ["UNAVAILABLE"] }) },
    )
    .get("/api/conversations/:conv/messages", async ({ request }) => {
      const u = await user(request);
      const url = new URL(request.url);
      // From the raw path, decoded once here (Elysia's params are decoded leniently).
      const conv = pathSegment(url, 2);
      const afterSeq = intQuery(url, "afterSeq");
      const beforeSeq = intQuery(url, "beforeSeq");
      const limit = intQuery(url, "limit");
      const res = await timed(latency, "history", () =>
        logic.history({ userId: u.userId, conv, afterSeq, beforeSeq, limit, maxLimit: LIMITS.historyMaxLimit }),
      );
      return json(200, res);
    }, {
      detail: doc({ summary: "A page of a conversation's messages (afterSeq, beforeSeq or the latest)", ok: [200, HistorySchema], token: true, errors: ["BAD_REQUEST", "FORBIDDEN", "UNAVAILABLE"] }),
    })
    .get(
      "/api/gateway",
      () => {
        const wsUrl = deps.gateway();
        if (!wsUrl) throw new AppError("UNAVAILABLE", "no connect instance is available");
        return json(200, { wsUrl });
      },
      { detail: doc({ summary: "The WebSocket URL of a live connect instance", ok: [200, GatewaySchema], errors: ["UNAVAILABLE"] }) },
    )
    .use(chatRoutes({ logic, user }));
  return withOpenApi(app);
}

async function web(part: "html" | "js" | "css" | "icon", type: string, headers: Record<string, string> = {}): Promise<Response> {
  const body = (await webAssets())[part];
  return new Response(body, { headers: { "content-type": type, "cache-control": "no-cache", "x-content-type-options": "nosniff", ...headers } });
}

/** Runs fn, observing its duration (seconds) into h's cell for route (bunchat_api_request_seconds). */
async function timed<T>(h: TallyHistogram, route: string, fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  try {
    return await fn();
  } finally {
    h.child({ route }).observe((performance.now() - t0) / 1000);
  }
}
