// Where each stream event goes: which Redis routing hashes name its connect instances, and what
// is pushed to them. Pure; the push group does the lookups and deliveries.
import type { PushEvent } from "../../proto/connect.ts";
import type { Keys } from "../shared/keys.ts";
import { parseConv } from "../shared/protocol.ts";
import type { DecodedEvent } from "../shared/stream.ts";

export interface Route {
  /** Hashes of instanceId → count (roomInstances / userInstances); the union of their fields are the targets. */
  lookups: string[];
  event: PushEvent;
}

/** A typing relay older than this when task reads it is dropped: it would only mislead (ms). */
export const TYPING_STALE_MS = 3000;

/**
 * The route of one event, or null if it goes nowhere: a malformed conversation id, a typing relay
 * older than TYPING_STALE_MS at `now` (ms), or typing in a note to self. Route events ("r") are
 * the push handler's.
 */
export function routeOf(e: Exclude<DecodedEvent, { t: "r" }>, keys: Keys, now = Date.now()): Route | null {
  if (e.t === "p") return { lookups: [keys.roomInstances(e.p.room)], event: { t: "p", p: e.p } };
  if (e.t === "k") return { lookups: [keys.userInstances(e.userId)], event: { t: "k", userId: e.userId, sid: e.sid } };
  if (e.t === "rd") {
    // The reader's connections (`read`) and, in a DM with someone else, the other user's (`receipt`).
    const conv = parseConv(e.conv);
    if (!conv) return null;
    const uid = e.user.userId;
    const event: PushEvent = { t: "rd", conv: e.conv, user: e.user, readSeq: e.readSeq };
    if (e.o !== undefined) event.o = e.o;
    const lookups = [keys.userInstances(uid)];
    if (conv.kind === "dm" && conv.a !== conv.b) {
      event.peer = conv.a === uid ? conv.b : conv.a;
      lookups.push(keys.userInstances(event.peer));
    }
    return { lookups, event };
  }
  if (e.t === "ty") {
    const conv = parseConv(e.conv);
    if (!conv || !(now - e.ts <= TYPING_STALE_MS)) return null;
    if (conv.kind === "room") return { lookups: [keys.roomInstances(conv.room)], event: { t: "ty", conv: e.conv, user: e.user, room: conv.room } };
    if (conv.a === conv.b) return null;
    const peer = conv.a === e.user.userId ? conv.b : conv.a;
    return { lookups: [keys.userInstances(peer)], event: { t: "ty", conv: e.conv, user: e.user, users: [peer] } };
  }
  const conv = parseConv(e.msg.conv);
  if (!conv) return null;
  if (conv.kind === "room") return { lookups: [keys.roomInstances(conv.room)], event: { t: "m", msg: e.msg, room: conv.room } };
  const users = conv.a === conv.b ? [conv.a] : [conv.a, conv.b];
  return { lookups: users.map((u) => keys.userInstances(u)), event: { t: "m", msg: e.msg, users } };
}
