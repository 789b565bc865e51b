// The WebSocket load generator of bench/messaging.ts: N clients, each joined to exactly one
// room, sending paced room messages and timing every delivery. Works against any server that
// speaks the CONTRACT.md frames (bunchat's connect tier, bench/baseline-pubsub.ts).
//
// Each message body is `<step>:<index>:<send time µs>:xxx…` (performance.now() of this process,
// which both sends and receives). Two latencies are recorded per delivery: from that send time,
// and from the *intended* send time of the pacing schedule, which also counts how late a stalled
// generator was (coordinated omission); that lateness alone is reported as sendLag.
import type { Histogram } from "hdr-histogram-js";
import { io as socketIo } from "socket.io-client";
import { newHistogram } from "./lib.ts";

/** Step number × REF_SPAN + message index = the `ref` of a send; also bounds messages per step. */
const REF_SPAN = 10_000_000;

export interface Step {
  no: number;
  rate: number;
  sent: number;
  acked: number;
  errored: number;
  /** deliveries of this step's messages, duplicates included */
  received: number;
  /** per message: 0 not sent, 1 sent, 2 acked, 3 error reply */
  state: Uint8Array;
  /** per message: deliveries seen (saturates at 255) */
  recv: Uint8Array;
  /** per message: performance.now() when sent, and when the schedule wanted it sent (ms) */
  sentAt: Float64Array;
  dueAt: Float64Array;
  /** send → receive, µs */
  latency: Histogram;
  /** scheduled send → receive, µs */
  scheduleLatency: Histogram;
  ackLatency: Histogram;
  sendLag: Histogram;
  errors: Record<string, number>;
  /** set once the step was reported; replies and deliveries after that are late (still counted per message) */
  closed: boolean;
  lateAcks: number;
  lateDeliveries: number;
  /** clients closed by the server (or the network) from this step's start until the next step's: deliveries owed to them show as lost */
  clientsClosed: number;
}

/**
 * One client connection, whatever carries the frames: a plain WebSocket (bunchat, the bare Bun
 * baseline) or a Socket.IO socket whose "f" event carries the same JSON frames each way.
 */
interface Client {
  no: number;
  room: string;
  send(frame: string): void;
  isOpen(): boolean;
  isClosed(): boolean;
  close(): void;
  joined?: (ok: boolean, why?: string) => void;
}

export type Transport = "ws" | "socketio";

export class LoadGen {
  readonly clients: Client[] = [];
  /** Unexpected closes and errors outside any step, by code. */
  readonly stray: Record<string, number> = {};
  /** performance.now() of the last reply or delivery: the final drain waits for quiet */
  lastActivity = 0;
  private readonly steps = new Map<number, Step>();
  /** the step most recently started (closes are charged to it) */
  private current?: Step;
  private closing = false;
  private readonly pad: string;

  constructor(
    private readonly o: { roomSize: number; bodyBytes: number; runId: string; transport?: Transport; senders?: number },
  ) {
    this.pad = "x".repeat(o.bodyBytes);
  }

  roomOf(client: number): string {
    return `b${this.o.runId}r${Math.floor(client / this.o.roomSize)}`;
  }

  /** Opens clients [0, n): client i gets url(i); `concurrency` handshakes at a time. */
  async open(n: number, url: (i: number) => string, concurrency: number): Promise<void> {
    let next = 0;
    const worker = async () => {
      while (next < n) {
        const i = next++;
        this.clients[i] = await this.connect(i, url(i));
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
  }

  private connect(no: number, url: string): Promise<Client> {
    return this.o.transport === "socketio" ? this.connectSocketIo(no, url) : this.connectWs(no, url);
  }

  private connectWs(no: number, url: string): Promise<Client> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      const c: Client = {
        no,
        room: this.roomOf(no),
        send: (f) => ws.send(f),
        isOpen: () => ws.readyState === WebSocket.OPEN,
        isClosed: () => ws.readyState === WebSocket.CLOSED,
        close: () => ws.readyState <= WebSocket.OPEN && ws.close(1000),
      };
      const timer = setTimeout(() => reject(new Error(`client ${no}: no open within 15 s`)), 15_000);
      ws.onopen = () => {
        clearTimeout(timer);
        resolve(c);
      };
      ws.onerror = () => {
        clearTimeout(timer);
        reject(new Error(`client ${no}: WebSocket error on ${url.replace(/token=[^&]+/, "token=…")}`));
      };
      ws.onclose = (ev) => {
        clearTimeout(timer);
        if (!this.closing) this.closed(`close:${ev.code}`);
        c.joined?.(false, `closed ${ev.code}`);
      };
      ws.onmessage = (ev) => this.onFrame(c, ev.data as string);
    });
  }

  /** `url` is http://host:port/?token=…; the socket uses the WebSocket transport only. */
  private connectSocketIo(no: number, url: string): Promise<Client> {
    return new Promise((resolve, reject) => {
      const u = new URL(url);
      const s = socketIo(u.origin, { transports: ["websocket"], reconnection: false, forceNew: true, auth: { token: u.searchParams.get("token") } });
      let closed = false;
      const c: Client = {
        no,
        room: this.roomOf(no),
        send: (f) => s.emit("f", f),
        isOpen: () => s.connected,
        isClosed: () => closed,
        close: () => s.disconnect(),
      };
      const timer = setTimeout(() => reject(new Error(`client ${no}: no open within 15 s`)), 15_000);
      s.on("connect", () => {
        clearTimeout(timer);
        resolve(c);
      });
      s.on("connect_error", (e) => {
        clearTimeout(timer);
        reject(new Error(`client ${no}: Socket.IO connect error: ${e.message}`));
      });
      s.on("disconnect", (why) => {
        closed = true;
        if (!this.closing) this.closed(`close:${why}`);
        c.joined?.(false, `closed ${why}`);
      });
      s.on("f", (data: string) => this.onFrame(c, data));
    });
  }

  /** Every client joins its room; resolves when every `joined` arrived. */
  async joinAll(concurrency: number, timeoutMs = 60_000): Promise<void> {
    let next = 0;
    const worker = async () => {
      while (next < this.clients.length) {
        const c = this.clients[next++];
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`client ${c.no}: no joined within ${timeoutMs} ms`)), timeoutMs);
          c.joined = (ok, why) => {
            clearTimeout(timer);
            c.joined = undefined;
            ok ? resolve() : reject(new Error(`client ${c.no}: join failed: ${why}`));
          };
          c.send(JSON.stringify({ op: "join", room: c.room, ref: "join" }));
        });
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
  }

  private closed(why: string) {
    this.count(this.stray, why);
    if (this.current) this.current.clientsClosed++;
  }

  private count(m: Record<string, number>, k: string) {
    m[k] = (m[k] ?? 0) + 1;
  }

  private onFrame(c: Client, data: string): void {
    // Hot path: deliveries are parsed by hand (the frame is built by the server as
    // {"op":"msg",…,"body":"…",…} and our bodies hold no quote or escape).
    if (typeof data === "string" && data.startsWith('{"op":"msg"')) {
      const at = data.indexOf('"body":"');
      if (at >= 0) return this.delivered(data.slice(at + 8, data.indexOf('"', at + 8)));
    }
    let f: Record<string, any>;
    try {
      f = JSON.parse(typeof data === "string" ? data : new TextDecoder().decode(data));
    } catch {
      return this.count(this.stray, "unparseable-frame");
    }
    switch (f.op) {
      case "msg":
        return this.delivered(String(f.body));
      case "ack":
        return this.acked(f.ref, false, "");
      case "error":
        if (f.ref === "join") return c.joined?.(false, `${f.code}: ${f.message}`);
        return this.acked(f.ref, true, String(f.code));
      case "joined":
        return c.joined?.(true);
    }
  }

  private delivered(body: string): void {
    const a = body.indexOf(":");
    const b = body.indexOf(":", a + 1);
    const c = body.indexOf(":", b + 1);
    const st = this.steps.get(Number(body.slice(0, a)));
    if (!st) return this.count(this.stray, "foreign-msg");
    const idx = Number(body.slice(a + 1, b));
    this.lastActivity = performance.now();
    if (st.recv[idx] < 255) st.recv[idx]++;
    if (st.closed) {
      st.lateDeliveries++;
      return;
    }
    st.received++;
    const now = performance.now();
    st.latency.recordValue(Math.max(1, Math.round(now * 1000 - Number(body.slice(b + 1, c)))));
    st.scheduleLatency.recordValue(Math.max(1, Math.round((now - st.dueAt[idx]) * 1000)));
  }

  private acked(ref: unknown, error: boolean, code: string): void {
    const st = typeof ref === "number" ? this.steps.get(Math.floor(ref / REF_SPAN)) : undefined;
    if (!st) return this.count(this.stray, error ? `unknown-error:${code}` : "unknown-ack");
    const idx = (ref as number) % REF_SPAN;
    this.lastActivity = performance.now();
    if (st.state[idx] !== 1) return this.count(st.errors, "duplicate-reply");
    if (st.closed) {
      st.state[idx] = error ? 3 : 2;
      if (error) this.count(this.stray, `late-error:${code}`);
      else st.lateAcks++;
      return;
    }
    if (error) {
      st.state[idx] = 3;
      st.errored++;
      this.count(st.errors, code);
    } else {
      st.state[idx] = 2;
      st.acked++;
      st.ackLatency.recordValue(Math.max(1, Math.round((performance.now() - st.sentAt[idx]) * 1000)));
    }
  }

  /**
   * Sends `rate` msgs/s for `seconds`, round-robin over the senders (spread over every room),
   * on a 1 ms timer that catches up with the schedule. Stops by itself after the planned
   * count or 3× the planned time, whichever comes first. Rate 0 just waits `seconds`.
   */
  async pace(no: number, rate: number, seconds: number): Promise<Step> {
    const total = Math.round(rate * seconds);
    if (total >= REF_SPAN) throw new Error(`at most ${REF_SPAN - 1} messages per step`);
    const st: Step = {
      no,
      rate,
      sent: 0,
      acked: 0,
      errored: 0,
      received: 0,
      state: new Uint8Array(total),
      recv: new Uint8Array(total),
      sentAt: new Float64Array(total),
      dueAt: new Float64Array(total),
      latency: newHistogram(),
      scheduleLatency: newHistogram(),
      ackLatency: newHistogram(),
      sendLag: newHistogram(),
      errors: {},
      closed: false,
      lateAcks: 0,
      lateDeliveries: 0,
      clientsClosed: 0,
    };
    this.steps.set(no, st);
    this.current = st;
    // --senders S: sender k is client k·(n/S) + k mod (n/S), so the senders spread evenly over the
    // rooms (S/(n/r) per room of r) and over the connect instances (client i uses instance i mod m)
    const n = this.clients.length;
    const senders = Math.min(n, this.o.senders || n);
    const stride = Math.floor(n / senders);
    const gap = 1000 / rate;
    const t0 = performance.now();
    if (!total) await Bun.sleep(seconds * 1000); // rate 0: an idle step, for the CPU of an idle cluster
    const deadline = t0 + seconds * 3000;
    let i = 0;
    while (i < total) {
      const now = performance.now();
      if (now > deadline) break;
      const due = Math.min(total, Math.floor((now - t0) / gap) + 1);
      for (; i < due; i++) {
        const k = i % senders;
        const c = this.clients[k * stride + (k % stride)];
        if (!c.isOpen()) {
          this.count(st.errors, "client-not-open");
          continue;
        }
        const intended = t0 + i * gap;
        const head = `${no}:${i}:${Math.round(now * 1000)}:`;
        const body = head + this.pad.slice(head.length);
        st.sentAt[i] = now;
        st.dueAt[i] = intended;
        st.state[i] = 1;
        st.sent++;
        st.sendLag.recordValue(Math.max(1, Math.round((now - intended) * 1000)));
        c.send(`{"op":"send","room":"${c.room}","body":"${body}","ref":${no * REF_SPAN + i}}`);
      }
      await Bun.sleep(1);
    }
    return st;
  }

  /** Waits until every reply and expected delivery arrived, or `ms` passed. */
  async drain(st: Step, ms: number): Promise<void> {
    const until = performance.now() + ms;
    while (performance.now() < until) {
      if (st.acked + st.errored === st.sent && st.received >= st.acked * this.o.roomSize) return;
      await Bun.sleep(20);
    }
  }

  /** Waits until no reply or delivery arrived for `quietMs`, at most `maxMs`. */
  async drainAll(quietMs: number, maxMs: number): Promise<void> {
    const until = performance.now() + maxMs;
    while (performance.now() < until && performance.now() - this.lastActivity < quietMs) await Bun.sleep(100);
  }

  /**
   * The loss accounting from per-message delivery counts: at the end of a step's drain (which
   * closes it: later replies and deliveries are late), or again after the final drain.
   */
  settle(st: Step) {
    st.closed = true;
    let lost = 0;
    let duplicates = 0;
    let unacked = 0;
    let strayDeliveries = 0;
    const want = this.o.roomSize;
    for (let i = 0; i < st.state.length; i++) {
      const s = st.state[i];
      if (s === 1) unacked++;
      if (s === 2) {
        if (st.recv[i] < want) lost += want - st.recv[i];
        else duplicates += st.recv[i] - want;
      } else strayDeliveries += st.recv[i]; // delivered though not acknowledged (yet)
    }
    return { expected: st.acked * want, lost, duplicates, unacked, strayDeliveries };
  }

  async close(): Promise<void> {
    this.closing = true;
    for (const c of this.clients) if (c && !c.isClosed()) c.close();
    // Give the close handshakes a moment; the processes are stopped right after anyway.
    const until = performance.now() + 5000;
    while (this.clients.some((c) => c && !c.isClosed()) && performance.now() < until) await Bun.sleep(50);
  }
}
