// Wire shapes of the public contract (CONTRACT.md), composed from the definitions the server
// itself uses (src/shared/protocol.ts, proto/logic.ts), so a change there shows up here as a
// type error rather than as a silent drift.
import type { ErrorCode } from "../shared/errors.ts";
import type { Message, PresenceEvent, UserRef } from "../shared/protocol.ts";
import type { ConversationSummary, HistoryRes, ReadRes, RoomInfo, SendAck, SessionGrant } from "../../proto/logic.ts";

export type { ErrorCode, Message, PresenceEvent, UserRef, HistoryRes, SendAck, SessionGrant };

/** A `ref`: a string of at most 64 characters or a safe integer (v1.1). The client uses integers. */
export type Ref = string | number;

/** One entry of GET /api/conversations (v1.1: with readSeq, unread and, for a direct one, peer). */
export type Conversation = ConversationSummary;

/** GET /api/rooms/{roomId} (the contract's shape; logic's RoomInfo has extra fields). */
export type RoomMembers = Pick<RoomInfo, "roomId" | "onlineCount" | "members">;

/** Frames a client sends. */
export type ClientFrame =
  | { op: "join" | "leave"; room: string; ref?: Ref }
  | { op: "send"; room: string; body: string; clientMsgId?: string; ref?: Ref }
  | { op: "send"; toUserId: number; body: string; clientMsgId?: string; ref?: Ref }
  | { op: "sync"; conv: string; afterSeq: number; limit?: number; ref?: Ref }
  | { op: "ping"; ref?: Ref }
  | { op: "read"; conv: string; seq: number; ref?: Ref }
  | { op: "typing"; conv: string };

/** Frames the server sends: direct replies echo the request's ref. */
export type ServerFrame =
  | ({ op: "msg" } & Message)
  | ({ op: "presence" } & PresenceEvent)
  | { op: "joined"; ref?: Ref; room: string; conv: string; onlineCount: number; lastSeq: number }
  | { op: "left"; ref?: Ref; room: string }
  | ({ op: "ack"; ref?: Ref } & SendAck)
  | { op: "error"; ref?: Ref; code: ErrorCode; message: string }
  | { op: "synced"; ref?: Ref; conv: string; lastSeq: number; hasMore: boolean }
  | { op: "pong"; ref?: Ref; ts: number }
  | ({ op: "read"; ref?: Ref } & ReadRes)
  | { op: "receipt"; conv: string; user: UserRef; readSeq: number }
  | { op: "typing"; conv: string; user: UserRef };

export type FrameOf<O extends ServerFrame["op"]> = Extract<ServerFrame, { op: O }>;

/** An error from the server (HTTP envelope or WS error frame / close code) or the network. */
export class ChatError extends Error {
  constructor(
    /** The contract's code name, or NETWORK when no answer arrived, or SIGNED_OUT. */
    readonly code: ErrorCode | "NETWORK" | "SIGNED_OUT",
    message: string,
    /** HTTP status, or the WebSocket close code, when there was one. */
    readonly status?: number,
  ) {
    super(message);
    this.name = "ChatError";
  }
}
