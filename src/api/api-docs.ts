// (v1.1) What the OpenAPI document says about each HTTP route beyond its request schemas: a
// summary, the success response's shape (CONTRACT.md "HTTP API" table), the error envelope for
// the statuses the route can answer, and the bearer token for token routes. Routes put
// doc(...) in their hook's `detail`; nothing here changes what a route does (every handler
// returns a Response, which Elysia never validates against a schema).
import { t, type DocumentDecoration, type TSchema } from "elysia";
import { ERROR_CODES, type ErrorCode } from "../shared/errors.ts";

const Int = (description?: string) => t.Number({ multipleOf: 1, ...(description ? { description } : {}) });
export const UserRefSchema = t.Object({ userId: t.Number({ minimum: 1, multipleOf: 1 }), userName: t.String() });
export const SessionGrantSchema = t.Object({ userId: t.Number({ minimum: 1, multipleOf: 1 }), userName: t.String(), token: t.String() });
export const SendAckSchema = t.Object({
  id: t.String({ description: "decimal string of a 64-bit id" }),
  conv: t.String(),
  seq: Int("per-conversation sequence number, from 1"),
  ts: Int("ms since the epoch, when the message was accepted"),
});
export const MessageSchema = t.Object({
  id: t.String(),
  conv: t.String(),
  seq: Int(),
  from: UserRefSchema,
  body: t.String(),
  ts: Int("ms since the epoch"),
  clientMsgId: t.Optional(t.String()),
});
export const RoomInfoSchema = t.Object({
  roomId: t.String(),
  onlineCount: Int("distinct users with a connection joined now"),
  members: t.Array(UserRefSchema),
});
export const ConversationsSchema = t.Object({
  conversations: t.Array(
    t.Object({
      conv: t.String(),
      lastSeq: Int("0 where nothing was sent yet"),
      lastTs: t.Union([Int(), t.Null()]),
      readSeq: Int("(v1.1)"),
      unread: Int("(v1.1) lastSeq − readSeq, never below 0"),
      peer: t.Optional(UserRefSchema),
    }),
    { description: "most recent first" },
  ),
});
export const HistorySchema = t.Object({ messages: t.Array(MessageSchema, { description: "ascending by seq" }), hasMore: t.Boolean() });
export const ReadResultSchema = t.Object({ conv: t.String(), readSeq: t.Number({ minimum: 0, multipleOf: 1 }) });
export const GatewaySchema = t.Object({ wsUrl: t.String({ description: "ws://host:port/ws of a live connect instance" }) });
/** Every error of the HTTP API: {"error":{"code","message"}} (CONTRACT.md "HTTP API"). */
export const ErrorEnvelopeSchema = t.Object({
  error: t.Object({ code: t.Union(Object.keys(ERROR_CODES).map((c) => t.Literal(c))), message: t.String() }),
});

type Responses = NonNullable<DocumentDecoration["responses"]>;
const plain = (schema: TSchema) => JSON.parse(JSON.stringify(schema)) as Record<string, never>;
const jsonBody = (description: string, schema: TSchema) => ({ description, content: { "application/json": { schema: plain(schema) } } });

export interface DocOptions {
  summary: string;
  /** The success status and body shape; no schema for a response without a body (204). */
  ok: [status: number, schema?: TSchema];
  /** Needs `Authorization: Bearer <token>` (adds security and a 401 response). */
  token?: boolean;
  /** Error codes the route answers besides UNAUTHENTICATED and INTERNAL, as the error envelope. */
  errors?: ErrorCode[];
}

/** The `detail` of a route's hook: summary, responses, and the bearer security of a token route. */
export function doc(o: DocOptions): DocumentDecoration {
  const [status, schema] = o.ok;
  const responses: Responses = { [status]: schema ? jsonBody("success", schema) : { description: "success, no body" } };
  const codes = new Set<ErrorCode>([...(o.token ? (["UNAUTHENTICATED"] as const) : []), ...(o.errors ?? []), "INTERNAL"]);
  for (const code of codes) responses[ERROR_CODES[code].http] = jsonBody(code, ErrorEnvelopeSchema);
  return { summary: o.summary, responses, ...(o.token ? { security: [{ bearer: [] }] } : {}) };
}

const text = (description: string) => ({ description, content: { "text/plain": { schema: { type: "string" as const } } } });
/** GET /healthz answers plain text, not JSON. */
export const healthDoc: DocumentDecoration = { summary: "Liveness: 200 while the process is alive", responses: { 200: text("ok"), 503: text("starting or stopping") } };
