// ChatClient: the whole contract for one signed-in user, over HTTP and one WebSocket, with the
// state in a Store. It joins every room the user has, keeps each loaded conversation gap-free
// (a live message past a gap, a reconnect, or a late page triggers `sync` from syncedSeq, paged
// through hasMore), and sends with a clientMsgId so a retry can never post twice.
import { LIMITS, dmConv, parseConv, roomConv, type Message, type UserRef } from "../shared/protocol.ts";
import { HttpApi } from "./http.ts";
import { Socket, type Format, type SocketState } from "./socket.ts";
import { Outbox } from "./outbox.ts";
import { Store, type ConvState } from "./store.ts";
import { ChatError, type FrameOf, type ServerFrame, type SessionGrant } from "./types.ts";

export interface ChatClientOptions {
  /** The api tier's origin; "" for a page it serves. */
  baseUrl: string;
  /** WebSocket frame encoding (default json). */
  format?: Format;
  /** A send without an ack this long is marked failed (default 10 s); a late ack or echo still completes it. */
  sendTimeoutMs?: number;
  backoff?: { baseMs: number; maxMs: number };
}

export type ClientEvent =
  | { type: "state"; state: SocketState; closeCode?: number }
  | { type: "error"; error: ChatError; conv?: string; op?: "send" };

/** How long a `typing` push keeps its indicator (ms), and the least time between own typing ops. */
export const TYPING_SHOW_MS = 3_000;
export const TYPING_SEND_EVERY_MS = LIMITS.typingIntervalMs;
const SYNC_LIMIT = 500;
const PAGE_LIMIT = 50;
const WS_CLOSE_ERRORS: Record<number, ChatError["code"]> = { 4400: "BAD_REQUEST", 4413: "PAYLOAD_TOO_LARGE", 4429: "RATE_LIMITED" };

export class ChatClient {
  readonly http: HttpApi;
  readonly store = new Store();
  private socket?: Socket;
  private listeners = new Set<(e: ClientEvent) => void>();
  private syncing = new Map<string, Promise<void>>();
  private loading = new Map<string, Promise<void>>();
  private typingSentAt = new Map<string, number>();
  private rooms = new Set<string>();

  private readonly outbox: Outbox;

  constructor(private readonly opts: ChatClientOptions) {
    this.http = new HttpApi(opts.baseUrl);
    this.outbox = new Outbox({
      store: this.store,
      http: this.http,
      socket: () => this.socket,
      timeoutMs: opts.sendTimeoutMs ?? 10_000,
      onError: (e, conv) => this.fail(e, conv, "send"),
    });
  }

  get me(): UserRef | undefined {
    return this.store.me;
  }
  get token(): string | undefined {
    return this.http.token;
  }
  get connection(): SocketState {
    return this.socket?.state ?? "closed";
  }

  on(fn: (e: ClientEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }
  private emit(e: ClientEvent) {
    for (const l of this.listeners) l(e);
  }
  private fail(error: unknown, conv?: string, op?: "send") {
    this.emit({ type: "error", error: error instanceof ChatError ? error : new ChatError("INTERNAL", String(error)), conv, op });
  }

  /** Registers (201) and signs in; ChatError CONFLICT if the name is taken. */
  async register(userName: string, password: string): Promise<UserRef> {
    return this.begin(await this.http.register(userName, password));
  }
  /** Signs in; ChatError UNAUTHENTICATED on bad credentials, RATE_LIMITED after too many. */
  async login(userName: string, password: string): Promise<UserRef> {
    return this.begin(await this.http.login(userName, password));
  }
  /** Resumes a saved token, checked with GET /api/me (ChatError UNAUTHENTICATED if it is no longer valid). */
  async resume(token: string): Promise<UserRef> {
    this.http.token = token;
    try {
      return this.begin({ ...(await this.http.me()), token });
    } catch (e) {
      this.http.token = undefined;
      throw e;
    }
  }
  /** Ends the session on the server (best effort) and closes the socket. */
  async logout(): Promise<void> {
    this.socket?.stop();
    try {
      if (this.http.token) await this.http.logout();
    } finally {
      this.http.token = undefined;
      this.store.me = undefined;
    }
  }
  /** Closes the socket without ending the session. */
  close(): void {
    this.socket?.stop();
  }

  private begin(g: SessionGrant): UserRef {
    this.http.token = g.token;
    this.store.me = { userId: g.userId, userName: g.userName };
    return this.store.me;
  }

  /** Loads the conversation list, joins its rooms and opens the socket. Resolves once the list is in. */
  async connect(): Promise<void> {
    if (!this.http.token) throw new ChatError("SIGNED_OUT", "not signed in");
    const list = await this.http.conversations();
    this.store.mergeSummaries(list);
    for (const c of list) {
      const p = parseConv(c.conv);
      if (p?.kind === "room") this.rooms.add(p.room);
    }
    const format = this.opts.format ?? "json";
    this.socket = new Socket({
      format,
      backoff: this.opts.backoff,
      url: async () => {
        const token = this.http.token;
        if (!token) throw new ChatError("SIGNED_OUT", "signed out");
        // A refused upgrade looks like any failed connection; /api/me tells a revoked token apart.
        const [gw] = await Promise.all([
          this.http.gateway(),
          this.socket?.state === "reconnecting" ? this.checkSession() : Promise.resolve(),
        ]);
        const u = new URL(gw.wsUrl);
        u.searchParams.set("token", token);
        if (format === "msgpack") u.searchParams.set("format", "msgpack");
        return u.toString();
      },
      onFrame: (f) => this.onFrame(f),
      onState: (state, closeCode) => {
        this.emit({ type: "state", state, closeCode });
        const code = closeCode === undefined ? undefined : WS_CLOSE_ERRORS[closeCode];
        if (code) this.fail(new ChatError(code, `connection closed by the server (${closeCode})`, closeCode));
        if (state === "signedOut") this.fail(new ChatError("SIGNED_OUT", "signed out", closeCode));
      },
      onOpen: () => void this.afterOpen(),
    });
    this.socket.start();
  }

  private async checkSession(): Promise<void> {
    try {
      await this.http.me();
    } catch (e) {
      if (e instanceof ChatError && e.code === "UNAUTHENTICATED") throw new ChatError("SIGNED_OUT", "signed out", 401);
    }
  }

  /** Tells the client the browser went offline / online (window events). */
  setOnline(online: boolean): void {
    if (online) this.socket?.setOnline();
    else this.socket?.setOffline();
  }

  /** After every open: re-join the rooms, catch up every loaded conversation, resend pending sends. */
  private async afterOpen(): Promise<void> {
    const socket = this.socket!;
    const joins = [...this.rooms].map((room) => this.joinOnSocket(room));
    // The syncs go right behind the joins: the server runs each after the joins sent before it and
    // holds the conversation's live messages until its replay is out, so they come in seq order.
    const syncs = [...this.store.convs.values()].filter((c) => c.loaded).map((c) => this.sync(c.conv));
    await Promise.all(joins);
    if (!socket.isOpen) return;
    // Conversations not loaded may have moved while we were away: refresh their counters.
    this.http.conversations().then(
      (l) => this.store.mergeSummaries(l),
      () => undefined,
    );
    await Promise.all(syncs);
    this.outbox.resendPending();
  }

  private async joinOnSocket(room: string): Promise<void> {
    try {
      const j = await this.socket!.request<FrameOf<"joined">>({ op: "join", room });
      const c = this.store.conv(j.conv);
      c.lastSeq = Math.max(c.lastSeq, j.lastSeq);
      c.onlineCount = j.onlineCount;
      this.store.changed();
      if (c.loaded && c.lastSeq > c.syncedSeq) void this.sync(c.conv);
      if (c.members) void this.refreshMembers(room); // a list fetched before this join lacks us
    } catch (e) {
      if (e instanceof ChatError && e.code !== "NETWORK") this.fail(e, roomConv(room));
    }
  }

  /** Joins a room (live messages and presence from now on, and after every reconnect). */
  async joinRoom(room: string): Promise<ConvState> {
    const c = this.store.conv(roomConv(room));
    c.lastTs ??= Date.now(); // a new room goes to the top of the list until it has messages
    this.rooms.add(room);
    this.store.changed();
    if (this.socket?.isOpen) await this.joinOnSocket(room);
    return c;
  }

  /** The direct conversation with a user found by name (ChatError NOT_FOUND if none). */
  async startDirect(userName: string): Promise<ConvState> {
    const peer = await this.http.userByName(userName);
    const c = this.store.conv(dmConv(this.me!.userId, peer.userId));
    c.peer = peer;
    c.lastTs ??= Date.now();
    this.store.changed();
    return c;
  }

  /** Loads the newest page of a conversation once (and, for a room, its members); later calls return at once. */
  open(conv: string): Promise<void> {
    const c = this.store.conv(conv);
    if (c.kind === "room" && c.room) void this.refreshMembers(c.room);
    if (c.loaded) return Promise.resolve();
    let p = this.loading.get(conv);
    if (!p) {
      p = (async () => {
        const page = await this.http.history(conv, { limit: PAGE_LIMIT });
        this.store.putPage(conv, page.messages, page.hasMore, false);
        if (c.lastSeq > c.syncedSeq) await this.sync(conv);
      })().finally(() => this.loading.delete(conv));
      this.loading.set(conv, p);
    }
    return p;
  }

  /** Loads the page before the oldest message held; false when there is nothing older. */
  async loadOlder(conv: string): Promise<boolean> {
    const c = this.store.conv(conv);
    if (!c.loaded || !c.hasOlder || c.oldestSeq <= 1) return false;
    const page = await this.http.history(conv, { beforeSeq: c.oldestSeq, limit: PAGE_LIMIT });
    this.store.putPage(conv, page.messages, page.hasMore, true);
    return page.messages.length > 0;
  }

  async refreshMembers(room: string): Promise<void> {
    try {
      const info = await this.http.room(room);
      const c = this.store.conv(roomConv(room));
      c.members = new Map(info.members.map((m) => [m.userId, m]));
      c.onlineCount = info.onlineCount;
      this.store.changed();
    } catch (e) {
      this.fail(e, roomConv(room));
    }
  }

  /** Fetches what is missing after syncedSeq over the socket, page by page until hasMore is false. One at a time per conversation. */
  sync(conv: string): Promise<void> {
    const running = this.syncing.get(conv);
    if (running) return running;
    const p = (async () => {
      const c = this.store.conv(conv);
      let after = c.syncedSeq;
      for (;;) {
        if (!this.socket?.isOpen) return;
        const done = await this.socket.request<FrameOf<"synced">>({ op: "sync", conv, afterSeq: after, limit: SYNC_LIMIT });
        // Its msg frames came first and are in the store, which moved syncedSeq past them.
        after = Math.max(c.syncedSeq, done.lastSeq);
        if (!done.hasMore) return;
      }
    })()
      .catch((e) => {
        if (!(e instanceof ChatError && e.code === "NETWORK")) this.fail(e, conv);
      })
      .finally(() => this.syncing.delete(conv));
    this.syncing.set(conv, p);
    return p;
  }

  /** Queues a message; it shows as pending until acked (then under its seq), or failed after sendTimeoutMs. Returns its clientMsgId. */
  send(conv: string, body: string): string {
    return this.outbox.send(conv, body);
  }

  /** Sends a failed message again with the same clientMsgId: the server stores it at most once. */
  retry(conv: string, clientMsgId: string): void {
    this.outbox.retry(conv, clientMsgId);
  }

  /** Marks a conversation read up to its lastSeq (WS `read`, or HTTP when offline); no-op if already read. */
  async markRead(conv: string): Promise<void> {
    const c = this.store.conv(conv);
    if (c.lastSeq <= c.readSeq) return;
    const seq = c.lastSeq;
    c.readSeq = seq; // optimistic: the badge clears now; the server's answer can only raise it
    this.store.changed();
    try {
      const r = this.socket?.isOpen ? await this.socket.request<FrameOf<"read">>({ op: "read", conv, seq }) : await this.http.markRead(conv, seq);
      c.readSeq = Math.max(c.readSeq, r.readSeq);
      this.store.changed();
    } catch (e) {
      if (!(e instanceof ChatError && e.code === "NETWORK")) this.fail(e, conv);
    }
  }

  /** Tells the others this user is typing; sent at most every TYPING_SEND_EVERY_MS per conversation. */
  typing(conv: string): void {
    const now = Date.now();
    if (now - (this.typingSentAt.get(conv) ?? 0) < TYPING_SEND_EVERY_MS) return;
    if (this.socket?.post({ op: "typing", conv })) this.typingSentAt.set(conv, now);
  }

  /** Users typing in a conversation now (expired indicators dropped). */
  typingUsers(conv: string): UserRef[] {
    const c = this.store.convs.get(conv);
    if (!c) return [];
    const now = Date.now();
    return [...c.typing.values()].filter((t) => t.until > now).map((t) => t.user);
  }

  private onFrame(f: ServerFrame): void {
    switch (f.op) {
      case "msg": {
        const { op: _op, ...m } = f;
        const gap = this.store.putMessage(m as Message);
        if (gap) void this.sync(m.conv);
        return;
      }
      case "presence": {
        const c = this.store.conv(roomConv(f.room));
        c.onlineCount = f.onlineCount;
        if (c.members) {
          if (f.event === "join") c.members.set(f.user.userId, f.user);
          else c.members.delete(f.user.userId);
        }
        this.store.changed();
        return;
      }
      case "read": {
        const c = this.store.conv(f.conv);
        c.readSeq = Math.max(c.readSeq, f.readSeq);
        this.store.changed();
        return;
      }
      case "receipt": {
        const c = this.store.conv(f.conv);
        c.peerReadSeq = Math.max(c.peerReadSeq, f.readSeq);
        this.store.changed();
        return;
      }
      case "typing": {
        if (f.user.userId === this.me?.userId) return;
        this.store.conv(f.conv).typing.set(f.user.userId, { user: f.user, until: Date.now() + TYPING_SHOW_MS });
        this.store.changed();
        return;
      }
      case "error":
        this.fail(new ChatError(f.code, f.message));
        return;
      default:
        return; // replies whose request timed out
    }
  }
}
