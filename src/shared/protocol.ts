// Names for the public protocol's numbers and strings (CONTRACT.md, WebSocket section).

export const CLIENT_OPS = ["join", "leave", "send", "sync", "ping", "read", "typing"] as const;
export type ClientOp = (typeof CLIENT_OPS)[number];

export const CLOSE = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  RESTARTING: 1012,
  MALFORMED: 4400,
  TOKEN_REVOKED: 4401,
  HEARTBEAT_TIMEOUT: 4408,
  FRAME_TOO_LARGE: 4413,
  ABUSE: 4429,
} as const;

export const LIMITS = {
  /** Largest WebSocket frame a client may send, in bytes (inclusive). */
  maxFrameBytes: 16 * 1024,
  /** HTTP request body limit in bytes. */
  maxHttpBody: 64 * 1024,
  /** Malformed frames tolerated per window before closing with 4400. */
  malformedPerWindow: 20,
  malformedWindowMs: 10_000,
  /** RATE_LIMITED replies tolerated per window before closing with 4429. */
  rateLimitedPerWindow: 200,
  /**
   * Requests (send, sync, join, leave) one connection may have waiting for their answer; beyond
   * it a request is answered RATE_LIMITED at once (and counts toward 4429), so a flood queues
   * nothing in connect or logic.
   */
  maxInFlightPerConn: 256,
  maxBodyCodePoints: 4000,
  syncDefaultLimit: 100,
  syncMaxLimit: 500,
  historyDefaultLimit: 50,
  historyMaxLimit: 200,
  /** (v1.1) At most one typing relay per user and conversation per this many ms. */
  typingIntervalMs: 2000,
  /** clientMsgId deduplication window. */
  idempotencySec: 24 * 3600,
} as const;

export const ROOM_ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
export const USER_NAME_RE = /^[A-Za-z0-9_.-]{3,32}$/;

/**
 * Whether a password's length is allowed: 8-128 Unicode code points. One rule for logic, which
 * refuses others with BAD_REQUEST, and the web app's Register form, which says so first.
 */
export const passwordLengthOk = (password: string): boolean => {
  const len = [...password].length;
  return len >= 8 && len <= 128;
};

export interface UserRef {
  userId: number;
  userName: string;
}

/** The Message object of the contract. */
export interface Message {
  id: string;
  conv: string;
  seq: number;
  from: UserRef;
  body: string;
  ts: number;
  clientMsgId?: string;
}

export interface PresenceEvent {
  room: string;
  onlineCount: number;
  event: "join" | "leave";
  user: UserRef;
}

export const roomConv = (room: string) => `room:${room}`;
export const dmConv = (a: number, b: number) => (a <= b ? `dm:${a}:${b}` : `dm:${b}:${a}`);

export type ParsedConv = { kind: "room"; room: string } | { kind: "dm"; a: number; b: number };

/** Parses a conversation id; null if it is not of the contract's form. */
export function parseConv(conv: string): ParsedConv | null {
  if (conv.startsWith("room:")) {
    const room = conv.slice(5);
    return ROOM_ID_RE.test(room) ? { kind: "room", room } : null;
  }
  const m = /^dm:([1-9]\d{0,15}):([1-9]\d{0,15})$/.exec(conv);
  if (!m) return null;
  const a = Number(m[1]);
  const b = Number(m[2]);
  return a <= b ? { kind: "dm", a, b } : null;
}

/** A DM's parsed id. */
export type DmConv = Extract<ParsedConv, { kind: "dm" }>;

/** The other user of a DM for userId (userId itself for a note to self). */
export const peerOf = (pc: DmConv, userId: number): number => (pc.a === userId ? pc.b : pc.a);

/** Whether userId may use the conversation (CONTRACT.md): any room (anyone signed in); a DM only its two users. */
export const isParticipant = (pc: ParsedConv, userId: number): boolean => pc.kind === "room" || pc.a === userId || pc.b === userId;

/** A userId: an integer >= 1 (safe in a double). */
export const isUserId = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 1;

/** A seq, or a seq bound (afterSeq, beforeSeq, readSeq): an integer >= 0 (safe in a double). */
export const isSeq = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
