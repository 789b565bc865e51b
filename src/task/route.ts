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

/** The route of one event, or null if its conversation id is malformed. Route events ("r") are the push handler's. */
export function routeOf(e: Exclude<DecodedEvent, { t: "r" }>, keys: Keys): Route | null {
  if (e.t === "p") return { lookups: [keys.roomInstances(e.p.room)], event: { t: "p", p: e.p } };
  if (e.t === "k") return { lookups: [keys.userInstances(e.userId)], event: { t: "k", userId: e.userId, sid: e.sid } };
  const conv = parseConv(e.msg.conv);
  if (!conv) return null;
  if (conv.kind === "room") return { lookups: [keys.roomInstances(conv.room)], event: { t: "m", msg: e.msg, room: conv.room } };
  const users = conv.a === conv.b ? [conv.a] : [conv.a, conv.b];
  return { lookups: users.map((u) => keys.userInstances(u)), event: { t: "m", msg: e.msg, users } };
}
