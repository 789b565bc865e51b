// Typing relay (CONTRACT.md v1.1 WS `typing`): best effort, never stored as a message. One Lua
// call per accepted typing op: a per-user-and-conversation gate (SET NX PX 2000) that, when it
// opens, appends a "ty" event to the conversation's stream partition; task routes it like a
// message (room → the instances holding the room; DM → the other user's instances) and drops it
// when it is older than STALE_MS by then. Connect also gates per connection, so a client that
// sends typing on every keystroke costs one RPC per 2 s, not one per key.
import type Redis from "ioredis";
import { badRequest } from "../shared/errors.ts";
import { partitionOf, type Keys } from "../shared/keys.ts";
import { LIMITS, type UserRef } from "../shared/protocol.ts";
import { encodeEvent } from "../shared/stream.ts";
import { convFor } from "./read.ts";
import type { ReadScripts } from "./scripts-read.ts";

export class Typing {
  constructor(private readonly deps: { redis: Redis & ReadScripts; keys: Keys; streamPartitions: number }) {}

  /** Relays that user is typing in conv, unless relayed within 2 s. Errors: BAD_REQUEST, FORBIDDEN (another pair's DM). */
  async typing(req: { user: UserRef; conv: string }): Promise<boolean> {
    if (!req || !req.user || !Number.isSafeInteger(req.user.userId) || typeof req.user.userName !== "string") throw badRequest("malformed typing");
    const pc = convFor(req.user.userId, req.conv);
    if (pc.kind === "dm" && pc.a === pc.b) return false; // a note to self has no one to tell
    const { keys, streamPartitions } = this.deps;
    const user = { userId: req.user.userId, userName: req.user.userName };
    const ev = encodeEvent({ t: "ty", conv: req.conv, user, ts: Date.now() });
    const n = await this.deps.redis.imTyping(
      keys.typingGate(user.userId, req.conv),
      keys.stream(partitionOf(req.conv, streamPartitions)),
      String(LIMITS.typingIntervalMs),
      ev,
    );
    return n === 1;
  }
}
