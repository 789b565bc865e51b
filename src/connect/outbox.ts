// Everything sent to one client goes through here: encoding in the connection's format, the
// frames-out count, and the slow-reader bound (a client that lets more than wsMaxBuffered bytes
// queue up is closed with 4429 rather than growing our memory).
import type { AppError } from "../shared/errors.ts";
import { CLOSE } from "../shared/protocol.ts";
import type { Socket } from "./conn.ts";
import { encode, errorFrame, type Wire } from "./frames.ts";
import type { ConnectMetrics } from "./metrics.ts";

/** Bun's send status when the frame was queued behind unsent data. */
const BACKPRESSURE = -1;

export class Outbox {
  constructor(
    private readonly maxBuffered: number,
    private readonly metrics: ConnectMetrics,
  ) {}

  send(ws: Socket, frame: object): void {
    this.wire(ws, encode(ws.data.format, frame));
  }

  /** An already encoded frame (fan-out encodes once per format, not once per socket). */
  wire(ws: Socket, data: Wire): void {
    if (ws.data.closed) return;
    const status = typeof data === "string" ? ws.sendText(data) : ws.sendBinary(data);
    this.metrics.framesOut.inc();
    if (status === BACKPRESSURE) this.checkBuffered(ws);
  }

  error(ws: Socket, ref: unknown, e: AppError): void {
    this.metrics.errors.inc({ code: e.code });
    this.send(ws, errorFrame(ref, e));
  }

  /** Closes a reader that has fallen too far behind; true if it did. */
  checkBuffered(ws: Socket): boolean {
    if (ws.getBufferedAmount() <= this.maxBuffered) return false;
    this.close(ws, CLOSE.ABUSE, "client too slow to read");
    return true;
  }

  close(ws: Socket, code: number, reason: string): void {
    if (!ws.data.closed) ws.close(code, reason);
  }
}
