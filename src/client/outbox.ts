// Own messages on their way: each is pending under its clientMsgId until acked (then it moves
// to the store under its seq), or failed after timeoutMs without an answer or when refused.
// Every attempt (first send, resend after a reconnect, Retry) uses the same clientMsgId, so the
// server stores and delivers it at most once (CONTRACT.md guarantee 4).
import { LIMITS, parseConv, peerOf } from "../shared/protocol.ts";
import type { HttpApi } from "./http.ts";
import type { Socket } from "./socket.ts";
import type { Store } from "./store.ts";
import { ChatError, type FrameOf } from "./types.ts";

export interface OutboxDeps {
  store: Store;
  http: HttpApi;
  socket: () => Socket | undefined;
  /** A send without an ack this long is marked failed (ms). */
  timeoutMs: number;
  onError: (e: unknown, conv: string) => void;
}

export class Outbox {
  private timers = new Map<string, ReturnType<typeof setTimeout>>();

  constructor(private readonly deps: OutboxDeps) {}

  send(conv: string, body: string): string {
    const clientMsgId = crypto.randomUUID();
    this.deps.store.conv(conv).pending.set(clientMsgId, { clientMsgId, body, createdAt: Date.now(), state: "pending" });
    this.deps.store.changed();
    void this.transmit(conv, clientMsgId);
    return clientMsgId;
  }

  retry(conv: string, clientMsgId: string): void {
    const p = this.deps.store.conv(conv).pending.get(clientMsgId);
    if (!p) return;
    p.state = "pending";
    p.error = undefined;
    this.deps.store.changed();
    void this.transmit(conv, clientMsgId);
  }

  /** After a reconnect: sends again what is still pending (not what failed: that waits for Retry). */
  resendPending(): void {
    for (const c of this.deps.store.convs.values()) for (const p of c.pending.values()) if (p.state === "pending") void this.transmit(c.conv, p.clientMsgId);
  }

  private async transmit(conv: string, clientMsgId: string): Promise<void> {
    const { store, http } = this.deps;
    const me = store.me;
    const c = store.conv(conv);
    const p = c.pending.get(clientMsgId);
    const target = parseConv(conv);
    if (!p || !target || !me) return;
    clearTimeout(this.timers.get(clientMsgId));
    const timer = setTimeout(() => {
      this.timers.delete(clientMsgId);
      this.markFailed(conv, clientMsgId, new ChatError("NETWORK", "not sent: no connection"));
    }, this.deps.timeoutMs);
    this.timers.set(clientMsgId, timer);
    const done = () => {
      clearTimeout(timer);
      this.timers.delete(clientMsgId);
    };
    const peer = target.kind === "dm" ? peerOf(target, me.userId) : 0;
    const frame = target.kind === "room" ? { op: "send" as const, room: target.room, body: p.body, clientMsgId } : { op: "send" as const, toUserId: peer, body: p.body, clientMsgId };
    // A body whose frame would pass the 16 KiB WebSocket limit (4413) goes over HTTP (64 KiB).
    const viaHttp = new TextEncoder().encode(JSON.stringify(frame)).length > LIMITS.maxFrameBytes - 64;
    const socket = this.deps.socket();
    if (!viaHttp && !socket?.isOpen) return; // a reconnect resends it, or the timer fails it
    try {
      const ack = viaHttp
        ? await (target.kind === "room" ? http.sendToRoom(target.room, p.body, clientMsgId) : http.sendToUser(peer, p.body, clientMsgId))
        : await socket!.request<FrameOf<"ack">>(frame);
      done();
      // The echo may have come first; if not, the message is ours: put it under its seq now.
      if (c.pending.has(clientMsgId)) store.putMessage({ id: ack.id, conv: ack.conv, seq: ack.seq, ts: ack.ts, from: me, body: p.body, clientMsgId });
    } catch (e) {
      if (e instanceof ChatError && e.code === "NETWORK") return; // the timer or a reconnect decides
      done();
      this.markFailed(conv, clientMsgId, e as ChatError);
      this.deps.onError(e, conv);
    }
  }

  private markFailed(conv: string, clientMsgId: string, error: ChatError) {
    const p = this.deps.store.conv(conv).pending.get(clientMsgId);
    if (!p || p.state === "failed") return;
    p.state = "failed";
    p.error = { code: error.code, message: error.message };
    this.deps.store.changed();
  }
}
