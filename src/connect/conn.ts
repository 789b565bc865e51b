// Per-connection state, kept in ws.data. One object per socket; the hot path only touches
// counters and timestamps on it.
import type { ServerWebSocket } from "bun";
import type { Message, UserRef } from "../shared/protocol.ts";
import type { Format, Wire } from "./frames.ts";

/** Counts events in a sliding window: hit() is true once more than `limit` fall within `windowMs`. */
export class SlidingWindow {
  private readonly ts: Float64Array;
  private next = 0;
  private filled = 0;

  constructor(
    limit: number,
    private readonly windowMs: number,
  ) {
    this.ts = new Float64Array(limit + 1);
  }

  hit(now: number): boolean {
    const n = this.ts.length;
    this.ts[this.next] = now;
    this.next = (this.next + 1) % n;
    if (this.filled < n) this.filled++;
    // Full ring: ts[next] is the oldest of the last limit+1 hits.
    return this.filled === n && now - this.ts[this.next] < this.windowMs;
  }
}

/** The live messages of one conversation held for a connection around its syncs (src/connect/sync-hold.ts). */
export interface LiveHold {
  /** Syncs of the conversation in flight on the connection. */
  syncs: number;
  /** The highest seq a finished sync of them replayed (0: none). */
  floor: number;
  /** Held live messages, in the order they were pushed. */
  msgs: Message[];
  /** Too many arrived: the hold was given up and live messages flow again. */
  gaveUp: boolean;
  /** The hasMore of the sync that replayed furthest. */
  hasMore: boolean;
  /** Set while the hold waits for the next page after a reply with hasMore. */
  more?: ReturnType<typeof setTimeout>;
  /** When the filter after the syncs ends (ms; 0 before it starts). */
  filterUntil: number;
}

export class Conn {
  /** Rooms joined or being joined; the room limit counts both. */
  readonly rooms = new Set<string>();
  /** Last frame, ping or pong from the client (ms): the heartbeat sweep closes silent sockets. */
  lastSeen: number;
  /** Last server ping (ms). */
  lastPing: number;
  /** Sends so far: with the instance id and conn number it makes each send's retryKey. */
  sendNo = 0;
  closed = false;
  /** The registration id its presence is recorded under: the instance's when the socket opened. */
  inst = "";
  /** join/leave run one after another per connection, so replies and presence ops keep the client's order. */
  ctl: Promise<void> = Promise.resolve();
  /** Requests waiting for their answer (LIMITS.maxInFlightPerConn). */
  inFlight = 0;
  // Allocated on first use: most connections never send a malformed frame or hit the rate limit.
  malformed?: SlidingWindow;
  rateLimited?: SlidingWindow;
  /** (v1.1) conv → ms of this connection's last typing relay (LIMITS.typingIntervalMs gate). */
  typedAt?: Map<string, number>;
  /** Frames the Outbox holds until the end of the turn (see Outbox.reply). */
  held?: Wire | Wire[];
  /** conv → live messages held around a `sync` of it (src/connect/sync-hold.ts). */
  syncing?: Map<string, LiveHold>;

  constructor(
    /** Unique per server instance; picks the send lane. */
    readonly no: number,
    readonly user: UserRef,
    /** Session id, for logout kicks. */
    readonly sid: string,
    /** Token expiry (ms). */
    readonly exp: number,
    readonly format: Format,
    now: number,
  ) {
    this.lastSeen = now;
    this.lastPing = now;
  }
}

export type Socket = ServerWebSocket<Conn>;
