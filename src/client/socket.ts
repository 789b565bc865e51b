// One WebSocket to a connect instance, kept up: the URL comes from /api/gateway before every
// attempt, and after a close other than 4401 (token revoked) or a local stop it reconnects with
// jittered exponential backoff. Requests carry an integer ref and resolve on the reply that
// echoes it; a close rejects every request still waiting (code NETWORK).
import { pack, unpack } from "../shared/codec.ts";
import { CLOSE } from "../shared/protocol.ts";
import { ChatError, type ClientFrame, type Ref, type ServerFrame } from "./types.ts";

export type Format = "json" | "msgpack";
/** Close code the client uses for a connection that stopped answering pings (4000–4999 is for applications). */
const CLIENT_CLOSE_NO_PONG = 4000;
/** connecting: first attempt; open; reconnecting: waiting or retrying after a loss; offline: the
 * browser says there is no network; signedOut: the token was refused (4401 or HTTP 401); closed: stop() was called. */
export type SocketState = "connecting" | "open" | "reconnecting" | "offline" | "signedOut" | "closed";

export interface SocketOptions {
  /** ws URL with the token and format already in its query. Rejecting with SIGNED_OUT ends the socket. */
  url: () => Promise<string>;
  format: Format;
  onFrame: (f: ServerFrame) => void;
  onState: (s: SocketState, closeCode?: number) => void;
  /** Called once per open, before any queued work; re-join and sync go here. */
  onOpen: () => void;
  /** Backoff: min(maxMs, baseMs * 2^attempt), then a random 50–100 % of it. Defaults 500 ms and 15 s. */
  backoff?: { baseMs: number; maxMs: number };
  /** How long a request waits for its reply (default 15 s). */
  requestTimeoutMs?: number;
  /** A `ping` this often (default 25 s); one unanswered within requestTimeoutMs drops the socket so it reconnects (a dead path may never report a close). */
  pingEveryMs?: number;
}

interface Waiter {
  resolve: (f: ServerFrame) => void;
  reject: (e: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

export class Socket {
  private ws?: WebSocket;
  private nextRef = 1;
  private waiters = new Map<Ref, Waiter>();
  private attempt = 0;
  private retryTimer?: ReturnType<typeof setTimeout>;
  private pingTimer?: ReturnType<typeof setInterval>;
  private stopped = false;
  private offline = false;
  state: SocketState = "connecting";

  constructor(private readonly opts: SocketOptions) {}

  start(): void {
    this.stopped = false;
    void this.connect();
  }

  /** Closes for good (logout, page teardown). */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    this.ws?.close(CLOSE.NORMAL);
    this.ws = undefined;
    this.failWaiters(new ChatError("NETWORK", "connection closed"));
    this.setState("closed");
  }

  /** The network went away (browser `offline` event): drop the socket and wait for setOnline. */
  setOffline(): void {
    this.offline = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    const ws = this.ws;
    this.ws = undefined;
    ws?.close(CLOSE.NORMAL);
    this.failWaiters(new ChatError("NETWORK", "offline"));
    if (!this.stopped && this.state !== "signedOut") this.setState("offline");
  }

  setOnline(): void {
    if (!this.offline) return;
    this.offline = false;
    if (this.stopped || this.state === "signedOut") return;
    this.attempt = 0;
    this.setState("reconnecting");
    void this.connect();
  }

  get isOpen(): boolean {
    return this.state === "open" && this.ws?.readyState === WebSocket.OPEN;
  }

  /** Sends a frame without waiting for a reply; false if the socket is not open. */
  post(frame: ClientFrame): boolean {
    if (!this.isOpen) return false;
    this.ws!.send(this.opts.format === "json" ? JSON.stringify(frame) : (pack(frame) as Uint8Array<ArrayBuffer>));
    return true;
  }

  /** Sends a frame with a fresh ref and resolves with the reply echoing it (an `error` reply rejects with its code). */
  request<F extends ServerFrame = ServerFrame>(frame: ClientFrame & { ref?: Ref }): Promise<F> {
    const ref = this.nextRef++;
    return new Promise<F>((resolve, reject) => {
      if (!this.post({ ...frame, ref } as ClientFrame)) return reject(new ChatError("NETWORK", "not connected"));
      const timer = setTimeout(() => {
        this.waiters.delete(ref);
        reject(new ChatError("NETWORK", `no reply to ${frame.op} in time`));
      }, this.opts.requestTimeoutMs ?? 15_000);
      this.waiters.set(ref, { resolve: resolve as (f: ServerFrame) => void, reject, timer });
    });
  }

  private setState(s: SocketState, code?: number) {
    if (this.state === s && code === undefined) return;
    this.state = s;
    this.opts.onState(s, code);
  }

  private failWaiters(e: Error) {
    for (const w of this.waiters.values()) {
      clearTimeout(w.timer);
      w.reject(e);
    }
    this.waiters.clear();
  }

  private async connect(): Promise<void> {
    if (this.stopped || this.offline) return;
    let url: string;
    try {
      url = await this.opts.url();
    } catch (e) {
      if (e instanceof ChatError && e.code === "SIGNED_OUT") return this.setState("signedOut");
      return this.scheduleRetry();
    }
    if (this.stopped || this.offline) return;
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => {
      if (this.ws !== ws) return;
      this.attempt = 0;
      this.setState("open");
      clearInterval(this.pingTimer);
      this.pingTimer = setInterval(() => {
        if (this.ws !== ws) return;
        this.request({ op: "ping" }).catch(() => {
          if (this.ws === ws) ws.close(CLIENT_CLOSE_NO_PONG); // onclose reconnects
        });
      }, this.opts.pingEveryMs ?? 25_000);
      this.opts.onOpen();
    };
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      const f = this.decode(ev.data);
      if (f) this.dispatch(f);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      clearInterval(this.pingTimer);
      this.ws = undefined;
      this.failWaiters(new ChatError("NETWORK", `connection closed (${ev.code})`));
      if (ev.code === CLOSE.TOKEN_REVOKED) return this.setState("signedOut", ev.code);
      if (this.stopped) return;
      this.setState("reconnecting", ev.code);
      this.scheduleRetry();
    };
  }

  private scheduleRetry() {
    if (this.stopped || this.offline) return;
    if (this.state !== "reconnecting") this.setState("reconnecting");
    const { baseMs, maxMs } = this.opts.backoff ?? { baseMs: 500, maxMs: 15_000 };
    const ceiling = Math.min(maxMs, baseMs * 2 ** this.attempt++);
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => void this.connect(), ceiling * (0.5 + Math.random() / 2));
  }

  private decode(data: unknown): ServerFrame | undefined {
    try {
      const v = typeof data === "string" ? JSON.parse(data) : unpack(new Uint8Array(data as ArrayBuffer));
      return v && typeof v === "object" && typeof (v as { op?: unknown }).op === "string" ? (v as ServerFrame) : undefined;
    } catch {
      return undefined; // a frame we cannot read is dropped; the server never sends one
    }
  }

  private dispatch(f: ServerFrame) {
    const ref = "ref" in f ? f.ref : undefined;
    const w = ref === undefined ? undefined : this.waiters.get(ref);
    if (w) {
      this.waiters.delete(ref!);
      clearTimeout(w.timer);
      if (f.op === "error") w.reject(new ChatError(f.code, f.message));
      else w.resolve(f);
      // a reply that is also state (read) still reaches the store
      if (f.op !== "read") return;
    }
    this.opts.onFrame(f);
  }
}
