// The entries logic appends to the partition streams and task consumes. Each entry has
// field d (msgpack of the event) and, where Redis assigns it atomically, field n
// (seq for messages, onlineCount for presence).
import { pack, unpack } from "./codec.ts";
import type { Message, PresenceEvent, UserRef } from "./protocol.ts";

export type StreamEvent =
  | { t: "m"; id: string; conv: string; from: UserRef; body: string; ts: number; cmid?: string }
  | { t: "p"; room: string; event: "join" | "leave"; user: UserRef }
  | { t: "k"; userId: number; sid: string };

export const encodeEvent = (e: StreamEvent): Buffer => pack(e);

export type DecodedEvent =
  | { t: "m"; msg: Message }
  | { t: "p"; p: PresenceEvent }
  | { t: "k"; userId: number; sid: string };

/** n is the Redis-assigned number (seq or onlineCount). */
export function decodeEvent(d: Uint8Array, n: number): DecodedEvent {
  const e = unpack(d) as StreamEvent;
  if (e.t === "m") return { t: "m", msg: toMessage(e, n) };
  if (e.t === "p") return { t: "p", p: { room: e.room, onlineCount: n, event: e.event, user: e.user } };
  return e;
}

export function toMessage(e: Extract<StreamEvent, { t: "m" }>, seq: number): Message {
  const m: Message = { id: e.id, conv: e.conv, seq, from: e.from, body: e.body, ts: e.ts };
  if (e.cmid !== undefined) m.clientMsgId = e.cmid;
  return m;
}

/** Flat [field, value, ...] of a stream entry → {d, n}. */
export function entryFields(fields: (Buffer | string)[]): { d?: Buffer; n: number } {
  let d: Buffer | undefined;
  let n = 0;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const k = fields[i].toString();
    if (k === "d") d = fields[i + 1] as Buffer;
    else if (k === "n") n = Number(fields[i + 1].toString());
  }
  return { d, n };
}
