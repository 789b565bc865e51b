// The local indexes of one connect instance (all sockets, user → sockets, room → sockets) and the
// application of ConnectRPC push events to them. Room messages go out through Bun's native
// pub/sub, one topic per room and format, encoded at most once per format and only for a format
// that has local subscribers.
//
// A connection with a `sync` in flight is taken off its room's topic for a while; SyncHolds
// (sync-hold.ts) decides what reaches it then.
import type { Logger } from "../shared/log.ts";
import { CLOSE, roomConv, type Message, type PresenceEvent } from "../shared/protocol.ts";
import type { PushEvent } from "../../proto/connect.ts";
import type { Socket } from "./conn.ts";
import { SyncHolds, type HoldRoom } from "./sync-hold.ts";
import { encode, msgFrame, presenceFrame, readFrame, receiptFrame, typingFrame, type Format, type Wire } from "./frames.ts";
import type { ConnectMetrics } from "./metrics.ts";
import type { Tally } from "../shared/tally.ts";
import type { Outbox } from "./outbox.ts";

interface LocalRoom extends HoldRoom {
  /** Joined sockets per format: tells whether a format's frame needs encoding at all. */
  readonly count: Record<Format, number>;
}

/** Publishes to a Bun topic (Bun's Server.publish); returns the send status. */
export type Publish = (topic: string, data: Wire) => number;

/** Encodes one frame lazily, at most once per format. */
class Lazy {
  private json?: Wire;
  private msgpack?: Wire;
  constructor(private readonly frame: object) {}
  get(format: Format): Wire {
    if (format === "json") return (this.json ??= encode("json", this.frame));
    return (this.msgpack ??= encode("msgpack", this.frame));
  }
}

export class Hub {
  readonly all = new Set<Socket>();
  private readonly users = new Map<number, Set<Socket>>();
  private readonly rooms = new Map<string, LocalRoom>();
  private readonly pushedM: Tally;
  private readonly pushedP: Tally;
  private readonly pushedK: Tally;
  private readonly pushedRd: Tally;
  private readonly pushedTy: Tally;
  /** Live messages around each connection's syncs (sync-hold.ts). */
  readonly holds: SyncHolds;

  constructor(
    private readonly publish: Publish,
    private readonly out: Outbox,
    private readonly metrics: ConnectMetrics,
    private readonly log: Logger,
    /** This instance's registration id: a `read` push skips the connection ("instance|conn") that asked. */
    public instanceId = "",
  ) {
    this.pushedM = metrics.pushEvents.child("m");
    this.pushedP = metrics.pushEvents.child("p");
    this.pushedK = metrics.pushEvents.child("k");
    this.pushedRd = metrics.pushEvents.child("rd");
    this.pushedTy = metrics.pushEvents.child("ty");
    this.holds = new SyncHolds((room) => this.rooms.get(room), out);
  }

  get roomCount(): number {
    return this.rooms.size;
  }

  add(ws: Socket): void {
    this.all.add(ws);
    const uid = ws.data.user.userId;
    let set = this.users.get(uid);
    if (!set) this.users.set(uid, (set = new Set()));
    set.add(ws);
  }

  /** Drops a closed socket from every index (Bun drops its topic subscriptions itself). */
  remove(ws: Socket): void {
    this.all.delete(ws);
    const uid = ws.data.user.userId;
    const set = this.users.get(uid);
    if (set?.delete(ws) && !set.size) this.users.delete(uid);
    for (const room of ws.data.rooms) this.leave(ws, room);
  }

  join(ws: Socket, room: string): void {
    let r = this.rooms.get(room);
    if (!r) {
      r = { socks: new Set(), topics: { json: `r:${room}:j`, msgpack: `r:${room}:m` }, count: { json: 0, msgpack: 0 }, syncing: new Set() };
      this.rooms.set(room, r);
    }
    if (r.socks.has(ws)) return;
    r.socks.add(ws);
    r.count[ws.data.format]++;
    if (this.holds.holds(ws, roomConv(room))) r.syncing.add(ws);
    else ws.subscribe(r.topics[ws.data.format]);
  }

  leave(ws: Socket, room: string): void {
    const r = this.rooms.get(room);
    if (!r?.socks.delete(ws)) return;
    r.count[ws.data.format]--;
    r.syncing.delete(ws);
    this.holds.left(ws, roomConv(room));
    if (!ws.data.closed) ws.unsubscribe(r.topics[ws.data.format]);
    if (!r.socks.size) this.rooms.delete(room);
  }

  /** Applies pushed events in order; one bad event is logged and skipped, the rest still apply. */
  apply(events: readonly PushEvent[]): void {
    for (const e of events) {
      try {
        if (e.t === "m") {
          this.pushedM.inc();
          if (e.room !== undefined) this.toRoom(e.room, e.msg);
          if (e.users) this.toUsers(e.users, e.msg);
          this.metrics.delivery.observe(Math.max(0, Date.now() - e.msg.ts) / 1000);
        } else if (e.t === "p") {
          this.pushedP.inc();
          this.presence(e.p);
        } else if (e.t === "k") {
          this.pushedK.inc();
          this.kick(e.userId, e.sid);
        } else if (e.t === "rd") {
          this.pushedRd.inc();
          this.readMoved(e);
        } else if (e.t === "ty") {
          this.pushedTy.inc();
          this.typing(e);
        } else {
          const t = (e as { t?: unknown }).t;
          this.metrics.pushEvents.child(String(t)).inc();
          this.log.warn("unknown push event ignored", { t });
        }
      } catch (err) {
        this.log.error("push event failed", { t: e.t, err });
      }
    }
  }

  /** One publish per format that has local subscribers; the frame is encoded once for each. */
  private toRoom(room: string, msg: Message): void {
    const r = this.rooms.get(room);
    if (!r) return;
    const { json, msgpack } = r.count;
    const frame = msgFrame(msg);
    if (json) this.publish(r.topics.json, encode("json", frame));
    if (msgpack) this.publish(r.topics.msgpack, encode("msgpack", frame));
    this.metrics.framesOut.inc(json + msgpack - r.syncing.size);
    if (!r.syncing.size) return;
    // A give-up below takes the socket out of r.syncing: iterate over a copy.
    const lazy = new Lazy(frame);
    for (const ws of [...r.syncing]) if (!this.holds.keep(ws, msg)) this.out.wire(ws, lazy.get(ws.data.format));
  }

  private toUsers(users: readonly number[], msg: Message): void {
    const frame = new Lazy(msgFrame(msg));
    for (let i = 0; i < users.length; i++) {
      // A message to oneself may list the user twice: deliver once.
      if (users.indexOf(users[i]) !== i) continue;
      const set = this.users.get(users[i]);
      if (set) for (const ws of set) if (!ws.data.syncing || !this.holds.keep(ws, msg)) this.out.wire(ws, frame.get(ws.data.format));
    }
  }

  /** To the room's local sockets, except the sockets of the user the event is about. */
  private presence(p: PresenceEvent): void {
    const r = this.rooms.get(p.room);
    if (!r) return;
    const frame = new Lazy(presenceFrame(p));
    for (const ws of r.socks) if (ws.data.user.userId !== p.user.userId) this.out.wire(ws, frame.get(ws.data.format));
  }

  /** `read` to the reader's connections except the one that asked; `receipt` to a DM's other user. */
  private readMoved(e: Extract<PushEvent, { t: "rd" }>): void {
    const mine = this.users.get(e.user.userId);
    if (mine) {
      const frame = new Lazy(readFrame(undefined, e.conv, e.readSeq));
      for (const ws of mine) if (e.o !== `${this.instanceId}|${ws.data.no}`) this.out.wire(ws, frame.get(ws.data.format));
    }
    const peers = e.peer !== undefined && e.peer !== e.user.userId ? this.users.get(e.peer) : undefined;
    if (peers) {
      const frame = new Lazy(receiptFrame(e.conv, e.user, e.readSeq));
      for (const ws of peers) this.out.wire(ws, frame.get(ws.data.format));
    }
  }

  /** A typing relay to the room's local sockets or the listed users' sockets, never to the typer's own. */
  private typing(e: Extract<PushEvent, { t: "ty" }>): void {
    const frame = new Lazy(typingFrame(e.conv, e.user));
    const socks: Iterable<Socket>[] = [];
    if (e.room !== undefined) {
      const r = this.rooms.get(e.room);
      if (r) socks.push(r.socks);
    }
    for (const u of e.users ?? []) {
      const set = u !== e.user.userId ? this.users.get(u) : undefined;
      if (set) socks.push(set);
    }
    for (const set of socks) for (const ws of set) if (ws.data.user.userId !== e.user.userId) this.out.wire(ws, frame.get(ws.data.format));
  }

  private kick(userId: number, sid: string): void {
    const set = this.users.get(userId);
    if (!set) return;
    // Closing removes the socket from the set: iterate over a copy.
    for (const ws of [...set]) if (ws.data.sid === sid) this.out.close(ws, CLOSE.TOKEN_REVOKED, "session ended");
  }
}
