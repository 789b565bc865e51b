// The client's one store: conversations by conv; in each, messages keyed by seq and pending
// sends keyed by clientMsgId. A message that arrives twice (live and from sync, or after a
// crash) lands on the same key, so there are no duplicates by construction; `syncedSeq` is the
// end of the contiguous run the client holds, so a gap shows up as missing keys after it.
import { parseConv, type Message, type UserRef } from "../shared/protocol.ts";
import type { Conversation, ErrorCode } from "./types.ts";

export type SendState = "pending" | "failed";

/** An own message not yet acknowledged. Acked, it moves to `messages` under its seq. */
export interface PendingMessage {
  clientMsgId: string;
  body: string;
  /** When it was first queued (ms since epoch), for display order among pending ones. */
  createdAt: number;
  state: SendState;
  error?: { code: ErrorCode | "NETWORK" | "SIGNED_OUT"; message: string };
}

export interface ConvState {
  conv: string;
  kind: "room" | "dm";
  /** Room id for a room; the other user of a direct conversation once known. */
  room?: string;
  peer?: UserRef;
  lastSeq: number;
  lastTs: number | null;
  readSeq: number;
  messages: Map<number, Message>;
  pending: Map<string, PendingMessage>;
  /** True once a page of history was loaded: from then on, live messages are kept and gaps synced. */
  loaded: boolean;
  /** Highest seq up to which the client holds every message from oldestSeq on. */
  syncedSeq: number;
  oldestSeq: number;
  hasOlder: boolean;
  /** Rooms: online members by userId (GET /api/rooms, then presence pushes). */
  members?: Map<number, UserRef>;
  onlineCount?: number;
  /** Users typing now, with when their indicator expires (ms since epoch). */
  typing: Map<number, { user: UserRef; until: number }>;
  /** Direct conversations: the other user's readSeq (from `receipt`). */
  peerReadSeq: number;
}

export const unreadOf = (c: ConvState) => Math.max(0, c.lastSeq - c.readSeq);

export class Store {
  me?: UserRef;
  convs = new Map<string, ConvState>();
  private listeners = new Set<() => void>();
  private queued = false;

  /** Calls fn after changes (batched to one call per microtask); returns the unsubscribe function. */
  subscribe(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  changed(): void {
    if (this.queued) return;
    this.queued = true;
    queueMicrotask(() => {
      this.queued = false;
      for (const l of this.listeners) l();
    });
  }

  /** The conversation's state, created empty on first use. */
  conv(conv: string): ConvState {
    let c = this.convs.get(conv);
    if (!c) {
      const p = parseConv(conv);
      c = {
        conv,
        kind: p?.kind ?? "room",
        room: p?.kind === "room" ? p.room : undefined,
        lastSeq: 0,
        lastTs: null,
        readSeq: 0,
        messages: new Map(),
        pending: new Map(),
        loaded: false,
        syncedSeq: 0,
        oldestSeq: 0,
        hasOlder: false,
        typing: new Map(),
        peerReadSeq: 0,
      };
      this.convs.set(conv, c);
    }
    return c;
  }

  /** Conversations most recent first (last message time, then newest created). */
  list(): ConvState[] {
    return [...this.convs.values()].sort((a, b) => (b.lastTs ?? 0) - (a.lastTs ?? 0));
  }

  /** Merges GET /api/conversations: counters only grow, so a stale list never undoes a live update. */
  mergeSummaries(list: Conversation[]): void {
    for (const s of list) {
      const c = this.conv(s.conv);
      c.lastSeq = Math.max(c.lastSeq, s.lastSeq);
      c.lastTs = Math.max(c.lastTs ?? 0, s.lastTs ?? 0) || null;
      c.readSeq = Math.max(c.readSeq, s.readSeq ?? 0);
      if (s.peer) c.peer = s.peer;
    }
    this.changed();
  }

  /**
   * Puts a message under its seq (a repeat overwrites the same key), drops the pending send it
   * answers, and moves lastSeq/syncedSeq. Returns true if the message leaves a gap after syncedSeq.
   */
  putMessage(m: Message): boolean {
    const c = this.conv(m.conv);
    c.lastSeq = Math.max(c.lastSeq, m.seq);
    c.lastTs = Math.max(c.lastTs ?? 0, m.ts);
    if (m.from.userId === this.me?.userId) {
      if (m.clientMsgId) c.pending.delete(m.clientMsgId);
      c.readSeq = Math.max(c.readSeq, m.seq); // the server moves the sender's read position too
    }
    if (c.kind === "dm" && !c.peer && this.me) {
      const p = parseConv(m.conv);
      if (p?.kind === "dm" && m.from.userId !== this.me.userId) c.peer = m.from;
      else if (p?.kind === "dm" && p.a === p.b) c.peer = this.me;
    }
    c.typing.delete(m.from.userId);
    this.changed();
    if (!c.loaded) return false;
    c.messages.set(m.seq, m);
    while (c.messages.has(c.syncedSeq + 1)) c.syncedSeq++;
    return m.seq > c.syncedSeq;
  }

  /** Installs a page of history: the latest page (baseline) or an older one (beforeSeq). */
  putPage(conv: string, messages: Message[], hasMore: boolean, older: boolean): void {
    const c = this.conv(conv);
    if (!older && !c.loaded) {
      c.loaded = true;
      c.hasOlder = hasMore;
      c.oldestSeq = messages[0]?.seq ?? c.lastSeq + 1;
      c.syncedSeq = messages.length ? messages[0]!.seq - 1 : c.lastSeq;
    } else if (older) {
      c.hasOlder = hasMore;
      if (messages.length) c.oldestSeq = Math.min(c.oldestSeq, messages[0]!.seq);
    }
    for (const m of messages) this.putMessage(m);
    this.changed();
  }

  /** Messages in seq order, pending ones after them. */
  timeline(conv: string): { messages: Message[]; pending: PendingMessage[] } {
    const c = this.convs.get(conv);
    if (!c) return { messages: [], pending: [] };
    return {
      messages: [...c.messages.values()].sort((a, b) => a.seq - b.seq),
      pending: [...c.pending.values()].sort((a, b) => a.createdAt - b.createdAt),
    };
  }
}
