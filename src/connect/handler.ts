// What happens on a socket: open and close (presence ops), and every client frame (join, leave,
// send, sync, ping). Frames are decoded and dispatched synchronously, so sends enter their lane
// in the order they arrived; join and leave are chained per connection.
import { AppError, badRequest } from "../shared/errors.ts";
import type { Logger } from "../shared/log.ts";
import { decodeJson, decodeMsgpack, WireDecodeError } from "../shared/wire-codec.ts";
import { CLOSE, LIMITS, parseConv, roomConv } from "../shared/protocol.ts";
import type { HistoryRes, JoinInfo, PresenceOp, SendReq } from "../../proto/logic.ts";
import { SlidingWindow, type Conn, type Socket } from "./conn.ts";
import {
  ackFrame,
  joinedFrame,
  leftFrame,
  msgFrame,
  parseClientFrame,
  pongFrame,
  readFrame,
  refOf,
  REF_RULE,
  syncLimit,
  syncedFrame,
  textBytes,
  type ClientFrame,
  type Ref,
} from "./frames.ts";
import type { Hub } from "./hub.ts";
import type { ConnectMetrics } from "./metrics.ts";
import type { Outbox } from "./outbox.ts";
import type { Upstream } from "./upstream.ts";

type SendFrame = Extract<ClientFrame, { op: "send" }>;
type SyncFrame = Extract<ClientFrame, { op: "sync" }>;
type ReadFrame = Extract<ClientFrame, { op: "read" }>;

export interface HandlerDeps {
  upstream: Upstream;
  hub: Hub;
  out: Outbox;
  metrics: ConnectMetrics;
  log: Logger;
  instanceId: string;
  maxRoomsPerConn: number;
}

export class FrameHandler {
  /** Presence cleanups of closed sockets still in flight; stop() waits for them (bounded). */
  readonly pending = new Set<Promise<unknown>>();
  private readonly up: Upstream;
  private readonly out: Outbox;
  /** The registration id presence ops are recorded under; ConnectServer changes it when its registration is lost. */
  inst: string;

  constructor(private readonly d: HandlerDeps) {
    this.up = d.upstream;
    this.out = d.out;
    this.inst = d.instanceId;
  }

  open(ws: Socket): void {
    const c = ws.data;
    this.d.log.debug("connection opened", { conn: c.no, userId: c.user.userId, format: c.format });
    this.d.hub.add(ws);
    c.inst = this.inst;
    this.track(this.presence({ k: "connect", inst: c.inst, conn: c.no, user: c.user }));
  }

  close(ws: Socket, code: number): void {
    const c = ws.data;
    if (c.closed) return;
    c.closed = true;
    this.d.log.debug("connection closed", { conn: c.no, userId: c.user.userId, code, rooms: c.rooms.size });
    this.d.metrics.closes.child(String(code)).inc();
    this.d.hub.remove(ws);
    // Undone under the registration the socket was recorded with, after any join/leave still
    // running, so logic sees each join before its leave.
    const inst = c.inst;
    const done = c.ctl.then(() => {
      const ops = [...c.rooms].map((room) => this.presence({ k: "leave", inst, conn: c.no, user: c.user, room }));
      c.rooms.clear();
      ops.push(this.presence({ k: "disconnect", inst, conn: c.no, user: c.user }));
      return Promise.all(ops);
    });
    this.track(done);
  }

  message(ws: Socket, raw: string | Buffer): void {
    const c = ws.data;
    const now = Date.now();
    c.lastSeen = now;
    this.d.metrics.framesIn.inc();
    const size = typeof raw === "string" ? textBytes(raw) : raw.byteLength;
    if (size > LIMITS.maxFrameBytes) return this.out.close(ws, CLOSE.FRAME_TOO_LARGE, "frame too large");
    let v: unknown;
    try {
      v = typeof raw === "string" ? decodeJson(raw) : decodeMsgpack(raw);
    } catch (e) {
      // Only our own decoder's messages go back to the client; anything else is a generic reason.
      const why = e instanceof WireDecodeError ? e.message : "frame is neither JSON text nor MessagePack binary";
      return this.malformed(ws, undefined, why, now);
    }
    const ref = refOf(v);
    if (ref === false) return this.malformed(ws, undefined, REF_RULE, now);
    const f = parseClientFrame(v);
    if (typeof f === "string") return this.malformed(ws, ref, f, now);
    if (f.op === "ping") return this.out.send(ws, pongFrame(ref, now));
    if (f.op === "typing") return this.typing(ws, f.conv, ref, now);
    if (c.inFlight >= LIMITS.maxInFlightPerConn) return this.rateLimited(ws, ref, new AppError("RATE_LIMITED", "too many requests in flight"));
    c.inFlight++;
    const done = () => void c.inFlight--;
    switch (f.op) {
      case "send":
        return void this.settle(this.send(ws, f, ref), "send").finally(done);
      case "sync":
        return void this.settle(this.sync(ws, f, ref), "sync").finally(done);
      case "read":
        return void this.settle(this.read(ws, f, ref), "read").finally(done);
      case "join":
        c.ctl = c.ctl.then(() => this.settle(this.join(ws, f.room, ref), "join")).finally(done);
        return;
      case "leave":
        c.ctl = c.ctl.then(() => this.settle(this.leave(ws, f.room, ref), "leave")).finally(done);
        return;
    }
  }

  private malformed(ws: Socket, ref: Ref | undefined, why: string, now: number): void {
    const c = ws.data;
    c.malformed ??= new SlidingWindow(LIMITS.malformedPerWindow, LIMITS.malformedWindowMs);
    if (c.malformed.hit(now)) return this.out.close(ws, CLOSE.MALFORMED, "too many malformed frames");
    this.out.error(ws, ref, badRequest(why));
  }

  private async send(ws: Socket, f: SendFrame, ref: Ref | undefined): Promise<void> {
    const c = ws.data;
    const item: SendReq = { from: c.user, body: f.body, retryKey: `${this.inst}:${c.no}:${++c.sendNo}` };
    if (typeof f.room === "string") item.room = f.room;
    else item.toUserId = f.toUserId!; // validated: a room or a positive integer
    if (typeof f.clientMsgId === "string") item.clientMsgId = f.clientMsgId;
    // Replies are held to the end of the turn: a batch's replies to one connection go out in one write.
    try {
      this.out.reply(ws, ackFrame(ref, await this.up.send(c.no, item)));
    } catch (e) {
      const err = this.appError(e, "send");
      if (err.code === "RATE_LIMITED") this.rateLimited(ws, ref, err, true);
      else this.out.error(ws, ref, err, true);
    }
  }

  /** Answers RATE_LIMITED, or closes with 4429 once the connection got too many in the window. */
  private rateLimited(ws: Socket, ref: Ref | undefined, err: AppError, held = false): void {
    if (this.abusive(ws.data)) return this.out.close(ws, CLOSE.ABUSE, "rate limit abuse");
    this.out.error(ws, ref, err, held);
  }

  /** Counts a RATE_LIMITED reply; true once there were too many in the window. */
  private abusive(c: Conn): boolean {
    // LIMITS has one window length, shared by both per-connection abuse counters.
    c.rateLimited ??= new SlidingWindow(LIMITS.rateLimitedPerWindow, LIMITS.malformedWindowMs);
    return c.rateLimited.hit(Date.now());
  }

  /**
   * The replay, then `synced`, then the conversation's live messages held meanwhile (sync-hold.ts).
   * It starts after the joins and leaves sent before it, so a `join` then `sync` of a room holds
   * and replays everything after the join.
   */
  private async sync(ws: Socket, f: SyncFrame, ref: Ref | undefined): Promise<void> {
    const c = ws.data;
    const holds = this.d.hub.holds;
    holds.hold(ws, f.conv);
    let res: HistoryRes;
    try {
      await c.ctl;
      res = await this.up.logic.history(
        { userId: c.user.userId, conv: f.conv, afterSeq: f.afterSeq, limit: syncLimit(f.limit), maxLimit: LIMITS.syncMaxLimit },
        { retries: 1 },
      );
    } catch (e) {
      holds.release(ws, f.conv, 0);
      return this.out.error(ws, ref, this.appError(e, "sync"));
    }
    const replayedTo = res.messages.at(-1)?.seq;
    try {
      ws.cork(() => {
        for (const m of res.messages) this.out.send(ws, msgFrame(m));
        this.out.send(ws, syncedFrame(ref, f.conv, replayedTo ?? f.afterSeq, res.hasMore));
      });
    } finally {
      holds.release(ws, f.conv, replayedTo ?? 0, res.hasMore);
    }
  }

  /** (v1.1) WS read: logic moves the position and pushes `read`/`receipt` to everyone else concerned. */
  private async read(ws: Socket, f: ReadFrame, ref: Ref | undefined): Promise<void> {
    const c = ws.data;
    try {
      const res = await this.up.reads.call({ user: c.user, conv: f.conv, seq: f.seq, origin: `${this.inst}|${c.no}` });
      this.out.send(ws, readFrame(ref, res.conv, res.readSeq));
    } catch (e) {
      this.out.error(ws, ref, this.appError(e, "read"));
    }
  }

  /**
   * (v1.1) WS typing: no reply when valid. This connection relays at most once per conversation
   * per LIMITS.typingIntervalMs without asking logic (which gates per user across connections);
   * more are dropped silently.
   */
  private typing(ws: Socket, conv: string, ref: Ref | undefined, now: number): void {
    const c = ws.data;
    const pc = parseConv(conv)!; // validated by parseClientFrame
    if (pc.kind === "dm" && pc.a !== c.user.userId && pc.b !== c.user.userId) return this.out.error(ws, ref, new AppError("FORBIDDEN", "not your conversation"));
    c.typedAt ??= new Map();
    const last = c.typedAt.get(conv);
    if (last !== undefined && now - last < LIMITS.typingIntervalMs) return;
    if (c.typedAt.size >= 256) for (const [k, t] of c.typedAt) if (now - t >= LIMITS.typingIntervalMs) c.typedAt.delete(k);
    if (c.typedAt.size >= 256) return; // that many conversations within 2 s: drop, like a gated one
    c.typedAt.set(conv, now);
    this.up.logic.typing({ user: c.user, conv }).catch((e) => this.out.error(ws, ref, this.appError(e, "typing")));
  }

  private async join(ws: Socket, room: string, ref: Ref | undefined): Promise<void> {
    const c = ws.data;
    if (c.closed) return;
    try {
      if (c.rooms.has(room)) return this.out.send(ws, await this.rejoined(room, ref));
      if (c.rooms.size >= this.d.maxRoomsPerConn)
        throw new AppError("FORBIDDEN", `a connection may join at most ${this.d.maxRoomsPerConn} rooms`);
      // Subscribe before logic counts the join, so no message published after it is missed.
      c.rooms.add(room);
      this.d.hub.join(ws, room);
      let info: JoinInfo;
      try {
        info = (await this.up.presence.call({ k: "join", inst: c.inst, conn: c.no, user: c.user, room })) as JoinInfo;
      } catch (e) {
        c.rooms.delete(room);
        this.d.hub.leave(ws, room);
        throw e;
      }
      this.out.send(ws, joinedFrame(ref, room, info.conv, info.onlineCount, info.lastSeq));
    } catch (e) {
      this.out.error(ws, ref, this.appError(e, "join"));
    }
  }

  /** A second join of a room: the current state, without counting the connection twice. */
  private async rejoined(room: string, ref: Ref | undefined): Promise<object> {
    const info = await this.up.logic.roomInfo({ room }, { retries: 1 });
    return joinedFrame(ref, room, roomConv(room), info.onlineCount, info.lastSeq);
  }

  private async leave(ws: Socket, room: string, ref: Ref | undefined): Promise<void> {
    const c = ws.data;
    if (c.closed) return;
    if (c.rooms.delete(room)) {
      this.d.hub.leave(ws, room);
      await this.presence({ k: "leave", inst: c.inst, conn: c.no, user: c.user, room });
    }
    this.out.send(ws, leftFrame(ref, room));
  }

  /** A presence op that never rejects: a failure is logged (logic's count is then off until this instance's cleanup). */
  private async presence(op: PresenceOp): Promise<void> {
    try {
      await this.up.presence.call(op);
    } catch (e) {
      this.d.log.warn("presence op failed", { k: op.k, userId: op.user.userId, err: e });
    }
  }

  /**
   * The request's promise, never rejecting: each op answers its own errors, so a rejection here
   * is a bug; it is logged rather than left unhandled (which would end the process) or left to
   * break the connection's join/leave chain.
   */
  private settle(p: Promise<void>, op: string): Promise<void> {
    return p.catch((err) => this.d.log.error("request failed unexpectedly", { op, err }));
  }

  private track(p: Promise<unknown>): void {
    this.pending.add(p);
    void p.finally(() => this.pending.delete(p));
  }

  /** AppErrors pass through; anything else is logged once and answered as INTERNAL. */
  private appError(e: unknown, op: string): AppError {
    if (e instanceof AppError) return e;
    this.d.log.error("unexpected error", { op, err: e });
    return new AppError("INTERNAL", "internal error");
  }
}
