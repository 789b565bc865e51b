// Everything sent to one client goes through here: encoding in the connection's format, the
// frames-out count, and the slow-reader bound (a client that lets more than wsMaxBuffered bytes
// queue up is closed with 4429 rather than growing our memory).
//
// Replies to sends are held to the end of the turn: one send batch from logic resolves all its
// sends in one turn, and a connection that had several sends in it (a client sending back to back)
// then gets its replies in one corked write, not one write (a syscall) each. A connection with a
// single reply gets it written directly, as before; what a write costs is the syscall, so that
// case cannot get cheaper. While a connection has replies held, anything else sent to it queues
// behind them, so frames still leave in the order they were sent.
import { AppError } from "../shared/errors.ts";
import type { Logger } from "../shared/log.ts";
import { CLOSE } from "../shared/protocol.ts";
import type { Socket } from "./conn.ts";
import { encode, errorFrame, type Ref, type Wire } from "./frames.ts";
import type { ConnectMetrics } from "./metrics.ts";

/** Bun's send status when the frame was queued behind unsent data. */
const BACKPRESSURE = -1;

export class Outbox {
  /** Sockets with held frames, in the order they got their first one this turn. */
  private holding: Socket[] = [];
  private readonly release = () => this.flush();

  constructor(
    private readonly maxBuffered: number,
    private readonly metrics: ConnectMetrics,
    private readonly log?: Logger,
  ) {}

  send(ws: Socket, frame: object): void {
    const data = this.encode(ws, frame);
    if (data !== undefined) this.wire(ws, data);
  }

  /**
   * The frame in the connection's format; if it cannot be encoded, an INTERNAL error frame
   * (without ref) instead, so an encoding failure is answered, never thrown (CONTRACT.md v1.1).
   */
  private encode(ws: Socket, frame: object): Wire | undefined {
    try {
      return encode(ws.data.format, frame);
    } catch (err) {
      this.log?.error("frame encoding failed", { conn: ws.data.no, op: (frame as { op?: unknown }).op, err });
      this.metrics.errors.child("INTERNAL").inc();
      try {
        return encode(ws.data.format, errorFrame(undefined, new AppError("INTERNAL", "reply could not be encoded")));
      } catch {
        return undefined;
      }
    }
  }

  /** An already encoded frame (fan-out encodes once per format, not once per socket). */
  wire(ws: Socket, data: Wire): void {
    const c = ws.data;
    if (c.closed) return;
    if (c.held !== undefined) return this.hold(ws, data);
    const status = typeof data === "string" ? ws.sendText(data) : ws.sendBinary(data);
    this.metrics.framesOut.inc();
    if (status === BACKPRESSURE) this.checkBuffered(ws);
  }

  /** A reply that may be one of many resolving in this turn: written at the end of the turn. */
  reply(ws: Socket, frame: object): void {
    if (ws.data.closed) return;
    const data = this.encode(ws, frame);
    if (data !== undefined) this.hold(ws, data);
  }

  error(ws: Socket, ref: Ref | undefined, e: AppError, held = false): void {
    this.metrics.errors.child(e.code).inc();
    if (held) this.reply(ws, errorFrame(ref, e));
    else this.send(ws, errorFrame(ref, e));
  }

  /** Closes a reader that has fallen too far behind; true if it did. */
  checkBuffered(ws: Socket): boolean {
    if (ws.getBufferedAmount() <= this.maxBuffered) return false;
    this.close(ws, CLOSE.ABUSE, "client too slow to read");
    return true;
  }

  /** Closes the socket after writing the replies it has held, which were sent before the close. */
  close(ws: Socket, code: number, reason: string): void {
    if (ws.data.closed) return;
    this.drain(ws);
    ws.close(code, reason);
  }

  private hold(ws: Socket, data: Wire): void {
    const c = ws.data;
    if (c.held === undefined) {
      c.held = data;
      // Queued behind the continuations already resolved in this turn (a whole batch's).
      if (this.holding.push(ws) === 1) queueMicrotask(this.release);
    } else if (Array.isArray(c.held)) c.held.push(data);
    else c.held = [c.held, data];
  }

  private flush(): void {
    const socks = this.holding;
    this.holding = [];
    for (const ws of socks) this.drain(ws);
  }

  /**
   * Writes what the socket holds, if anything: one frame directly, several in one corked write.
   * Also called before the end of the turn for frames that must not queue behind them (sync-hold.ts).
   */
  drain(ws: Socket): void {
    const c = ws.data;
    const held = c.held;
    if (held === undefined) return;
    c.held = undefined;
    if (c.closed) return;
    if (!Array.isArray(held)) return this.wire(ws, held);
    let status = 0;
    ws.cork(() => {
      for (const data of held) {
        const s = typeof data === "string" ? ws.sendText(data) : ws.sendBinary(data);
        if (s === BACKPRESSURE) status = s;
      }
    });
    this.metrics.framesOut.inc(held.length);
    if (status === BACKPRESSURE) this.checkBuffered(ws);
  }
}
