// LogicRPC: the contract between api/connect and logic. The single source of truth for its
// methods and payload types (msgpack-encoded; see src/shared/rpc.ts).
// Hot-path methods (authenticate, send, presence) take arrays: callers batch them.
import { serviceDefinition } from "../src/shared/rpc.ts";
import type { Result } from "../src/shared/batcher.ts";
import type { Message, UserRef } from "../src/shared/protocol.ts";

export interface Credentials {
  userName: string;
  password: string;
  /** The client's address as the api saw it (socket peer or trusted proxy's X-Forwarded-For): login limits are per address. */
  clientAddr?: string;
}

export interface SessionGrant extends UserRef {
  token: string;
}

/** What a valid token stands for. sid is the session id (a hash of the token), exp its expiry in ms. */
export interface Session extends UserRef {
  sid: string;
  exp: number;
}

export interface SendReq {
  /** userId from a verified token; userName is ignored (logic takes it from its own records). */
  from: UserRef;
  room?: string;
  toUserId?: number;
  body: string;
  clientMsgId?: string;
  /** Set by connect/api: makes a transport-level retry of the same send safe (short TTL). */
  retryKey?: string;
}

export interface SendAck {
  id: string;
  conv: string;
  seq: number;
  ts: number;
}

/**
 * conn numbers a connection within its connect instance. Logic records each (connection, room)
 * once, so every op is idempotent and a transport-level retry cannot count anything twice.
 */
export type PresenceOp =
  | { k: "connect"; inst: string; conn: number; user: UserRef }
  | { k: "disconnect"; inst: string; conn: number; user: UserRef }
  | { k: "join"; inst: string; conn: number; user: UserRef; room: string }
  | { k: "leave"; inst: string; conn: number; user: UserRef; room: string };

export interface JoinInfo {
  conv: string;
  onlineCount: number;
  lastSeq: number;
}

export interface RoomInfo {
  roomId: string;
  onlineCount: number;
  members: UserRef[];
  /** Last seq in the room (extra to the contract's room info; connect uses it for a repeated join). */
  lastSeq: number;
}

export interface HistoryReq {
  userId: number;
  conv: string;
  afterSeq?: number;
  beforeSeq?: number;
  limit?: number;
  /** Upper bound for limit (history 200, sync 500). */
  maxLimit: number;
}

export interface HistoryRes {
  messages: Message[];
  hasMore: boolean;
}

export interface ConversationSummary {
  conv: string;
  lastSeq: number;
  lastTs: number | null;
  /** (v1.1) the caller's readSeq, and lastSeq − readSeq (never below 0). */
  readSeq: number;
  unread: number;
  /** (v1.1) a direct conversation's other user (the caller for a note to self). */
  peer?: UserRef;
}

/** (v1.1) Mark conv read up to seq. origin ("instance|conn") is the WS connection asking: it gets the reply, not the push. */
export interface ReadReq {
  user: UserRef;
  conv: string;
  seq: number;
  origin?: string;
}

export interface ReadRes {
  conv: string;
  readSeq: number;
}

export interface LogicApi {
  [method: string]: (req: any) => Promise<any>;
  register(req: Credentials): Promise<SessionGrant>;
  login(req: Credentials): Promise<SessionGrant>;
  logout(req: { token: string }): Promise<null>;
  authenticate(req: { tokens: string[] }): Promise<Result<Session>[]>;
  /**
   * budgetMs: how long the caller still waits for this answer; logic answers within it and stores
   * nothing after it (default: IM_SEND_TIMEOUT_MS). answerBy: the same end as ms since the epoch by
   * the caller's clock; logic uses the earlier of the two, so the time the request spent on the way
   * (counted in budgetMs from its arrival) cannot push logic's deadline past the caller's.
   */
  send(req: { items: SendReq[]; budgetMs?: number; answerBy?: number }): Promise<Result<SendAck>[]>;
  presence(req: { ops: PresenceOp[] }): Promise<Result<JoinInfo | null>[]>;
  roomInfo(req: { room: string }): Promise<RoomInfo>;
  history(req: HistoryReq): Promise<HistoryRes>;
  conversations(req: { userId: number }): Promise<{ conversations: ConversationSummary[] }>;
  /** (v1.1) PUT /api/conversations/{conv}/read and WS read, batched. Item errors: BAD_REQUEST, FORBIDDEN, UNAVAILABLE. */
  markRead(req: { items: ReadReq[] }): Promise<Result<ReadRes>[]>;
  /** (v1.1) WS typing: relayed at most once per user and conv per 2 s (null either way). Errors: BAD_REQUEST, FORBIDDEN. */
  typing(req: { user: UserRef; conv: string }): Promise<null>;
  /** (v1.1) GET /api/users?name=: the user of that name, ignoring case. Errors: BAD_REQUEST, NOT_FOUND. */
  userByName(req: { name: string }): Promise<UserRef>;
}

export const LOGIC_METHODS = [
  "register",
  "login",
  "logout",
  "authenticate",
  "send",
  "presence",
  "roomInfo",
  "history",
  "conversations",
  "markRead",
  "typing",
  "userByName",
] as const;

export const LogicService = serviceDefinition("bunchat.Logic", LOGIC_METHODS);
export const LOGIC_SERVICE = "logic";
