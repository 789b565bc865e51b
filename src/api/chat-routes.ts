// (v1.1) HTTP routes for read positions and user look-up (CONTRACT.md "HTTP API"), mounted by
// app.ts. Shapes are checked by these schemas (which also feed the OpenAPI document); the rules
// (conv access, seq range, name form) are logic's, as for the WebSocket `read` op.
import { Elysia, t } from "elysia";
import { badRequest } from "../shared/errors.ts";
import type { Client } from "../shared/rpc.ts";
import { Batcher } from "../shared/batcher.ts";
import { json, pathSegment } from "./request.ts";
import { ReadResultSchema, UserRefSchema, doc } from "./api-docs.ts";
import type { LogicApi, ReadReq, ReadRes, Session } from "../../proto/logic.ts";

export interface ChatRouteDeps {
  logic: Client<LogicApi>;
  /** The caller's session from the request's bearer token; rejects with UNAUTHENTICATED. */
  user: (req: Request) => Promise<Session>;
}


// t.Number with multipleOf, not t.Integer: Elysia's Integer turns the string "2" into 2, and the
// contract wants a JSON integer. Logic checks it is a safe integer too.
const ReadBody = t.Object({ seq: t.Number({ minimum: 0, multipleOf: 1, description: "mark read up to this seq (clamped to the conversation's lastSeq)" }) });

export function chatRoutes(d: ChatRouteDeps) {
  // Like sends: every read of this process in flight shares a few RPCs.
  const reads = new Batcher<ReadReq, ReadRes>((items) => d.logic.markRead({ items }, { retries: 2 }), { concurrency: 4 });
  return new Elysia({ name: "bunchat-chat-routes" })
    .put(
      "/api/conversations/:conv/read",
      async ({ request, body }) => {
        const u = await d.user(request);
        // From the raw path, decoded exactly once (as for history), so dm%253A1%253A2 stays
        // "dm%3A1%3A2" and is refused.
        const conv = pathSegment(new URL(request.url), 2);
        return json(200, await reads.call({ user: { userId: u.userId, userName: u.userName }, conv, seq: body.seq }));
      },
      {
        params: t.Object({ conv: t.String({ description: "room:<roomId> or dm:<a>:<b>, raw or percent-encoded" }) }),
        body: ReadBody,
        detail: doc({ summary: "Mark a conversation read up to seq (v1.1)", ok: [200, ReadResultSchema], token: true, errors: ["BAD_REQUEST", "FORBIDDEN", "PAYLOAD_TOO_LARGE", "UNAVAILABLE"] }),
      },
    )
    .get(
      "/api/users",
      async ({ request, query }) => {
        await d.user(request);
        // The same parameter twice is 400 (CONTRACT.md); the schema alone would take the last one.
        const names = new URL(request.url).searchParams.getAll("name");
        if (names.length !== 1) throw badRequest("give exactly one name");
        return json(200, await d.logic.userByName({ name: query.name }));
      },
      {
        query: t.Object({ name: t.String({ description: "a userName, any case" }) }),
        detail: doc({ summary: "Look a user up by name, ignoring case (v1.1)", ok: [200, UserRefSchema], token: true, errors: ["BAD_REQUEST", "NOT_FOUND", "UNAVAILABLE"] }),
      },
    );
}
