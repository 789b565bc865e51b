// ConnectRPC: what the task tier tells a connect instance. One batched method; events in a
// batch are applied in order, so per-conversation order survives the hop.
import { serviceDefinition } from "../src/shared/rpc.ts";
import type { Message, PresenceEvent, UserRef } from "../src/shared/protocol.ts";

export type PushEvent =
  /** A message for a room's subscribers (room) or for all connections of some users (users). */
  | { t: "m"; msg: Message; room?: string; users?: number[] }
  | { t: "p"; p: PresenceEvent }
  /** Close the connections of session sid (logout) with 4401. */
  | { t: "k"; userId: number; sid: string }
  /**
   * (v1.1) user's readSeq in conv changed: user's connections get a `read` push (except the one
   * named by o, "instance|conn", which asked and got the reply), peer's (a DM's other user) a `receipt`.
   */
  | { t: "rd"; conv: string; user: UserRef; readSeq: number; o?: string; peer?: number }
  /** (v1.1) user is typing in conv: to the room's sockets (room) or the DM's other user (users), never to user's own. */
  | { t: "ty"; conv: string; user: UserRef; room?: string; users?: number[] };

export interface ConnectApi {
  [method: string]: (req: any) => Promise<any>;
  push(req: { events: PushEvent[] }): Promise<null>;
}

export const ConnectService = serviceDefinition("bunchat.Connect", ["push"]);
export const CONNECT_SERVICE = "connect";
