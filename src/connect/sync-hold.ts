// A `sync` and the live messages of its conversation on one connection (CONTRACT.md guarantees 2
// and 3: per-connection seq order, no duplicates in normal operation).
//
// While a connection's sync of a conversation is in flight, the conversation's live messages to it
// are held (a joined room's topic is unsubscribed meanwhile, so Bun's publish skips the socket)
// and sent after the `synced` reply, except those the replay sent. When the sync that replayed
// furthest answered hasMore, the hold goes on until the client's next sync of the conversation
// (at most MORE_WAIT_MS), so paging through a backlog stays in order too. After the last page,
// live messages up to the last replayed seq that come later (the sync read them before task
// pushed them) are dropped until the first one above it; after FILTER_MS the next one ends the
// filter whatever its seq. A sync that replayed nothing drops nothing. Whenever the socket goes
// back on its topic, its replies held for the end of the turn are written first, so a later
// publish cannot overtake what was held.
//
// Bounds: MAX_HELD messages per connection and conversation (past it the hold is given up: what
// it held and what follows go out live, as without a hold, and the replay may repeat some), and
// MAX_FILTERS filters per connection (past it, no filter: a late push may repeat a message).
import { isParticipant, parseConv, type Message } from "../shared/protocol.ts";
import type { LiveHold, Socket } from "./conn.ts";
import { msgFrame, type Format } from "./frames.ts";
import type { Outbox } from "./outbox.ts";

/** Live messages held for one connection and conversation at most. */
export const MAX_HELD = 1_000;
/** Filters one connection may have at once (above the default room limit of 100). */
const MAX_FILTERS = 128;
/** How long a hold waits for the next sync after a reply with hasMore (ms). */
export const MORE_WAIT_MS = 2_000;
/** How long a filter lasts at most (ms). */
const FILTER_MS = 10_000;

/** What a hold needs of a local room (Hub's LocalRoom). */
export interface HoldRoom {
  readonly socks: Set<Socket>;
  readonly topics: Record<Format, string>;
  /** Joined sockets with a hold or filter on the room: off the topic, their messages go through keep(). */
  readonly syncing: Set<Socket>;
}

/** After its syncs, before the next live message past them (finish() set filterUntil, or ended it). */
const filtering = (h: LiveHold): boolean => h.syncs === 0 && h.more === undefined;

export class SyncHolds {
  constructor(
    private readonly room: (name: string) => HoldRoom | undefined,
    private readonly out: Outbox,
  ) {}

  /**
   * Starts holding conv's live messages to ws while its sync of conv is in flight. Every call must
   * be followed by one release, also when the sync fails.
   */
  hold(ws: Socket, conv: string): void {
    const c = ws.data;
    c.syncing ??= new Map();
    const h = c.syncing.get(conv);
    if (h) {
      // Another sync in flight, the next page after hasMore, or a new sync during a filter.
      h.syncs++;
      clearTimeout(h.more);
      h.more = undefined;
      h.filterUntil = 0;
      return;
    }
    c.syncing.set(conv, { syncs: 1, floor: 0, msgs: [], gaveUp: false, hasMore: false, filterUntil: 0 });
    const r = this.roomOf(conv);
    if (r?.socks.has(ws)) {
      r.syncing.add(ws);
      ws.unsubscribe(r.topics[c.format]);
    }
  }

  /**
   * Ends one sync of conv on ws; replayedTo is the last seq its replay sent (0 if none or it
   * failed), hasMore its reply's. Once no sync of conv is in flight, the held messages above the
   * highest replayedTo go out in order, unless hasMore: then they wait for the next page.
   */
  release(ws: Socket, conv: string, replayedTo: number, hasMore = false): void {
    const h = ws.data.syncing?.get(conv);
    if (!h) return;
    if (replayedTo > 0 && replayedTo >= h.floor) {
      h.floor = replayedTo;
      h.hasMore = hasMore; // the sync that replayed furthest says whether a page follows
    }
    if (--h.syncs > 0) return;
    if (h.gaveUp) return this.end(ws, conv);
    if (h.hasMore && !ws.data.closed && this.reaches(ws, conv)) {
      h.more = setTimeout(() => this.finish(ws, conv), MORE_WAIT_MS);
      return;
    }
    this.finish(ws, conv);
  }

  /** Whether a room socket is off its topic for a hold or filter: join() must not subscribe it. */
  holds(ws: Socket, conv: string): boolean {
    const h = ws.data.syncing?.get(conv);
    return !!h && !h.gaveUp;
  }

  /** The socket left the room: a filter on it ends (its messages no longer come); a hold keeps what it has. */
  left(ws: Socket, conv: string): void {
    const h = ws.data.syncing?.get(conv);
    if (h && filtering(h)) this.end(ws, conv);
  }

  /** Takes msg if ws holds or filters its conversation (true: not to be sent now). */
  keep(ws: Socket, msg: Message): boolean {
    const h = ws.data.syncing?.get(msg.conv);
    if (!h || h.gaveUp) return false;
    if (filtering(h)) {
      if (msg.seq <= h.floor && Date.now() < h.filterUntil) return true;
      this.end(ws, msg.conv);
      return false;
    }
    if (h.msgs.length < MAX_HELD) {
      h.msgs.push(msg);
      return true;
    }
    // Too many: what was held goes out now, and msg and what follows go live.
    const held = h.msgs;
    h.msgs = [];
    if (h.syncs === 0) this.end(ws, msg.conv); // waiting for a next page that has not come
    else {
      h.gaveUp = true;
      this.live(ws, msg.conv);
    }
    for (const m of held) if (m.seq > h.floor) this.out.send(ws, msgFrame(m));
    return false;
  }

  /** No sync of conv left in flight: sends what the replays did not, then filters or ends. */
  private finish(ws: Socket, conv: string): void {
    const h = ws.data.syncing?.get(conv);
    if (!h || h.syncs > 0) return;
    h.more = undefined;
    h.hasMore = false;
    const rest = h.msgs.filter((m) => m.seq > h.floor);
    h.msgs = [];
    if (rest.length || !h.floor || ws.data.closed || !this.mayFilter(ws, conv)) this.end(ws, conv);
    else h.filterUntil = Date.now() + FILTER_MS;
    for (const m of rest) this.out.send(ws, msgFrame(m));
  }

  /** A filter only where conv's live messages come to ws, MAX_FILTERS at most; expired ones are ended here. */
  private mayFilter(ws: Socket, conv: string): boolean {
    if (!this.reaches(ws, conv)) return false;
    const now = Date.now();
    let filters = 0;
    for (const [other, h] of ws.data.syncing!) {
      if (other === conv || !filtering(h)) continue;
      if (now >= h.filterUntil) this.end(ws, other);
      else filters++;
    }
    return filters < MAX_FILTERS;
  }

  /** Whether conv's live messages come to ws: a room it joined, or its own direct conversation. */
  private reaches(ws: Socket, conv: string): boolean {
    const pc = parseConv(conv);
    if (pc?.kind === "room") return !!this.room(pc.room)?.socks.has(ws);
    return !!pc && isParticipant(pc, ws.data.user.userId);
  }

  private end(ws: Socket, conv: string): void {
    const c = ws.data;
    const h = c.syncing?.get(conv);
    if (h) clearTimeout(h.more);
    c.syncing?.delete(conv);
    if (!c.syncing?.size) c.syncing = undefined;
    this.live(ws, conv);
  }

  /** Puts a joined socket back on its room's topic, after writing the replies it holds (see the top). */
  private live(ws: Socket, conv: string): void {
    const r = this.roomOf(conv);
    if (!r?.syncing.delete(ws) || ws.data.closed) return;
    this.out.drain(ws);
    ws.subscribe(r.topics[ws.data.format]);
  }

  private roomOf(conv: string): HoldRoom | undefined {
    const pc = parseConv(conv);
    return pc?.kind === "room" ? this.room(pc.room) : undefined;
  }
}
