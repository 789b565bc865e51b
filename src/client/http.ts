// The HTTP half of the contract (CONTRACT.md "HTTP API") as typed calls. Every non-2xx answer
// becomes a ChatError with the envelope's code; a request that got no answer is code NETWORK.
import { ChatError, type Conversation, type HistoryRes, type RoomMembers, type SendAck, type SessionGrant, type UserRef } from "./types.ts";

export class HttpApi {
  token: string | undefined;

  /** baseUrl: the api tier's origin ("" in a page served by it, "http://host:port" elsewhere). */
  constructor(
    readonly baseUrl: string,
    token?: string,
  ) {
    this.token = token;
  }

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = {};
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers["content-type"] = "application/json";
    let res: Response;
    try {
      res = await fetch(this.baseUrl + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (e) {
      throw new ChatError("NETWORK", `could not reach the server: ${(e as Error).message}`);
    }
    const text = await res.text();
    let parsed: any = null;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      // not JSON (a proxy's error page): reported by status below
    }
    if (!res.ok) {
      const err = parsed?.error;
      throw new ChatError(err?.code ?? (res.status >= 500 ? "UNAVAILABLE" : "BAD_REQUEST"), err?.message ?? `HTTP ${res.status}`, res.status);
    }
    return parsed as T;
  }

  register = (userName: string, password: string) => this.call<SessionGrant>("POST", "/api/users", { userName, password });
  login = (userName: string, password: string) => this.call<SessionGrant>("POST", "/api/sessions", { userName, password });
  // The contract lets a body-less DELETE through, but the api as of this writing answers one
  // without Content-Length with 400 (its parse hook reads "" as JSON); `{}` is ignored either way.
  logout = () => this.call<null>("DELETE", "/api/sessions/current", {});
  me = () => this.call<UserRef>("GET", "/api/me");
  gateway = () => this.call<{ wsUrl: string }>("GET", "/api/gateway");
  conversations = async () => (await this.call<{ conversations: Conversation[] }>("GET", "/api/conversations")).conversations;
  room = (roomId: string) => this.call<RoomMembers>("GET", `/api/rooms/${encodeURIComponent(roomId)}`);
  /** 404 (ChatError code NOT_FOUND) when no user has that name. */
  userByName = (name: string) => this.call<UserRef>("GET", `/api/users?name=${encodeURIComponent(name)}`);
  markRead = (conv: string, seq: number) => this.call<{ conv: string; readSeq: number }>("PUT", `/api/conversations/${encodeURIComponent(conv)}/read`, { seq });

  /** At most one of afterSeq/beforeSeq; neither gives the latest `limit` (default 50, max 200). */
  history(conv: string, q: { afterSeq?: number; beforeSeq?: number; limit?: number } = {}) {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(q)) if (v !== undefined) params.set(k, String(v));
    const qs = params.size ? `?${params}` : "";
    return this.call<HistoryRes>("GET", `/api/conversations/${encodeURIComponent(conv)}/messages${qs}`);
  }

  sendToRoom = (room: string, body: string, clientMsgId?: string) =>
    this.call<SendAck>("POST", `/api/rooms/${encodeURIComponent(room)}/messages`, { body, clientMsgId });
  sendToUser = (userId: number, body: string, clientMsgId?: string) => this.call<SendAck>("POST", `/api/users/${userId}/messages`, { body, clientMsgId });
}
