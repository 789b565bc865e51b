// Client frame validation and server frame building for the WebSocket protocol (CONTRACT.md).
// Validation here is structural only; semantic checks (body length, clientMsgId length, target
// user, rate limit, conversation access) are logic's, which answers with AppErrors.
import { pack } from "../shared/codec.ts";
import type { WireError } from "../shared/errors.ts";
import { CLIENT_OPS, LIMITS, ROOM_ID_RE, parseConv, type Message, type PresenceEvent, type UserRef } from "../shared/protocol.ts";
import type { SendAck } from "../../proto/logic.ts";

export type Format = "json" | "msgpack";
/** An encoded frame: a string goes out as a text frame, bytes as a binary frame. */
export type Wire = string | Uint8Array;

export type ClientFrame =
  | { op: "join" | "leave"; room: string; ref?: unknown }
  | { op: "send"; room?: string | null; toUserId?: number | null; body: string; clientMsgId?: string | null; ref?: unknown }
  | { op: "sync"; conv: string; afterSeq: number; limit?: number | null; ref?: unknown }
  | { op: "ping"; ref?: unknown }
  | { op: "read"; conv: string; seq: number; ref?: unknown }
  | { op: "typing"; conv: string; ref?: unknown };

// Optional fields may be absent or null (msgpack clients often send nil for "not set"); the
// types say so, so handlers test them with typeof.
const absent = (v: unknown) => v === undefined || v === null;
const isRoom = (v: unknown): v is string => typeof v === "string" && ROOM_ID_RE.test(v);
const isInt = (v: unknown, min: number): v is number => Number.isSafeInteger(v) && (v as number) >= min;

const ROOM_RULE = "room must be 1-64 characters of [A-Za-z0-9_-]";
const CONV_RULE = "conv must be room:<roomId> or dm:<a>:<b> with a <= b";
const isConv = (v: unknown): v is string => typeof v === "string" && parseConv(v) !== null;

/** The frame itself (narrowed) if it is well-formed, else the reason it is not. */
export function parseClientFrame(v: unknown): ClientFrame | string {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return "a frame must be an object";
  const f = v as Record<string, unknown>;
  switch (f.op) {
    case "join":
    case "leave":
      return isRoom(f.room) ? (f as ClientFrame) : ROOM_RULE;
    case "send": {
      const toRoom = !absent(f.room);
      if (toRoom === !absent(f.toUserId)) return "send needs exactly one of room and toUserId";
      if (toRoom && !isRoom(f.room)) return ROOM_RULE;
      if (!toRoom && !isInt(f.toUserId, 1)) return "toUserId must be a positive integer";
      if (typeof f.body !== "string") return "body must be a string";
      if (!absent(f.clientMsgId) && typeof f.clientMsgId !== "string") return "clientMsgId must be a string";
      return f as ClientFrame;
    }
    case "sync":
      if (typeof f.conv !== "string") return "conv must be a string";
      if (!isInt(f.afterSeq, 0)) return "afterSeq must be an integer >= 0";
      if (!absent(f.limit) && !isInt(f.limit, 1)) return "limit must be an integer >= 1";
      return f as ClientFrame;
    case "ping":
      return f as ClientFrame;
    case "read":
      if (!isConv(f.conv)) return CONV_RULE;
      if (!isInt(f.seq, 0)) return "seq must be an integer >= 0";
      return f as ClientFrame;
    case "typing":
      return isConv(f.conv) ? (f as ClientFrame) : CONV_RULE;
    default:
      return `op must be one of ${CLIENT_OPS.join(", ")}`;
  }
}

/** The ref of a decoded frame, if it had one, so even error replies to bad frames can echo it. */
export function refOf(v: unknown): unknown {
  return typeof v === "object" && v !== null ? (v as { ref?: unknown }).ref ?? undefined : undefined;
}

export const syncLimit = (limit: number | null | undefined) => Math.min(limit ?? LIMITS.syncDefaultLimit, LIMITS.syncMaxLimit);

/** UTF-8 size of a text frame; the exact count only where the length alone cannot decide. */
export function textBytes(s: string): number {
  return s.length * 3 <= LIMITS.maxFrameBytes || s.length > LIMITS.maxFrameBytes ? s.length : Buffer.byteLength(s, "utf8");
}

export const encode = (format: Format, frame: object): Wire => (format === "json" ? JSON.stringify(frame) : pack(frame));

type Frame = Record<string, unknown>;

// Reply frames are built key by key: msgpack would encode an undefined ref as an extension
// value other clients cannot read, so an absent ref must be left out, not set to undefined.
function reply(op: string, ref: unknown): Frame {
  const f: Frame = { op };
  if (ref !== undefined) f.ref = ref;
  return f;
}

export function errorFrame(ref: unknown, e: WireError): Frame {
  const f = reply("error", ref);
  f.code = e.code;
  f.message = e.message;
  return f;
}

export function joinedFrame(ref: unknown, room: string, conv: string, onlineCount: number, lastSeq: number): Frame {
  const f = reply("joined", ref);
  f.room = room;
  f.conv = conv;
  f.onlineCount = onlineCount;
  f.lastSeq = lastSeq;
  return f;
}

export function leftFrame(ref: unknown, room: string): Frame {
  const f = reply("left", ref);
  f.room = room;
  return f;
}

export function ackFrame(ref: unknown, a: SendAck): Frame {
  const f = reply("ack", ref);
  f.id = a.id;
  f.conv = a.conv;
  f.seq = a.seq;
  f.ts = a.ts;
  return f;
}

export function syncedFrame(ref: unknown, conv: string, lastSeq: number, hasMore: boolean): Frame {
  const f = reply("synced", ref);
  f.conv = conv;
  f.lastSeq = lastSeq;
  f.hasMore = hasMore;
  return f;
}

export function pongFrame(ref: unknown, ts: number): Frame {
  const f = reply("pong", ref);
  f.ts = ts;
  return f;
}

/** (v1.1) The reply to a read op (with ref), or the push to the user's other connections (ref undefined). */
export function readFrame(ref: unknown, conv: string, readSeq: number): Frame {
  const f = reply("read", ref);
  f.conv = conv;
  f.readSeq = readSeq;
  return f;
}

/** (v1.1) To a DM's other user: user has read conv up to readSeq. */
export const receiptFrame = (conv: string, user: UserRef, readSeq: number): Frame => ({ op: "receipt", conv, user, readSeq });

/** (v1.1) Relay of another user's typing. */
export const typingFrame = (conv: string, user: UserRef): Frame => ({ op: "typing", conv, user });

export const msgFrame = (m: Message): Frame => ({ op: "msg", ...m });

export const presenceFrame = (p: PresenceEvent): Frame => ({
  op: "presence",
  room: p.room,
  onlineCount: p.onlineCount,
  event: p.event,
  user: p.user,
});
