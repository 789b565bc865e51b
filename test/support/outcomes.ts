// Senders for store-outage tests: each send has a unique body and is tried once (no retry), and
// its outcome is recorded with how long the answer took: acked (id, seq), an error code, or no
// answer within `giveUpMs`. Afterwards a test checks history against the outcomes.
import { WsClient } from "./connect.ts";
import { http } from "./http.ts";

export interface Outcome {
  body: string;
  /** ms from sending to the answer (or to giving up). */
  ms: number;
  ack?: { id: string; seq: number };
  err?: string;
}

abstract class OutcomeSender {
  readonly outcomes: Outcome[] = [];
  protected running = true;
  protected done: Promise<void> = Promise.resolve();

  get acked(): Outcome[] {
    return this.outcomes.filter((o) => o.ack);
  }
  get failed(): Outcome[] {
    return this.outcomes.filter((o) => !o.ack);
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.done;
  }
}

/** POSTs to a room every everyMs, one request in flight at a time. */
export class HttpOutcomes extends OutcomeSender {
  constructor(apiUrl: string, token: string, room: string, prefix: string, everyMs = 25, giveUpMs = 15_000) {
    super();
    this.done = (async () => {
      for (let n = 0; this.running; n++) {
        const body = `${prefix}${n}`;
        const t0 = Date.now();
        const r = await Promise.race([
          http(apiUrl, "POST", `/api/rooms/${room}/messages`, { token, body: { body } }).catch((e) => ({ status: -1, body: String(e) })),
          Bun.sleep(giveUpMs).then(() => ({ status: 0, body: null })),
        ]);
        const o: Outcome = { body, ms: Date.now() - t0 };
        if (r.status === 202) o.ack = { id: r.body.id, seq: r.body.seq };
        else o.err = r.status === 0 ? "NO_ANSWER" : (r.body?.error?.code ?? `HTTP_${r.status}`);
        this.outcomes.push(o);
        await Bun.sleep(everyMs);
      }
    })();
  }
}

/** Sends over one WebSocket every everyMs without waiting for answers; answers matched by ref. */
export class WsOutcomes extends OutcomeSender {
  private pending = new Map<number, { body: string; t0: number }>();

  constructor(ws: WsClient, room: string, prefix: string, everyMs = 25, giveUpMs = 15_000) {
    super();
    ws.ws.addEventListener("message", (e) => {
      const f = JSON.parse(e.data as string);
      if ((f.op !== "ack" && f.op !== "error") || typeof f.ref !== "number") return;
      const p = this.pending.get(f.ref);
      if (!p) return;
      this.pending.delete(f.ref);
      const o: Outcome = { body: p.body, ms: Date.now() - p.t0 };
      if (f.op === "ack") o.ack = { id: f.id, seq: f.seq };
      else o.err = f.code;
      this.outcomes.push(o);
    });
    this.done = (async () => {
      for (let n = 0; this.running; n++) {
        const body = `${prefix}${n}`;
        this.pending.set(n, { body, t0: Date.now() });
        ws.send({ op: "send", room, body, ref: n });
        await Bun.sleep(everyMs);
      }
      const end = Date.now() + giveUpMs;
      while (this.pending.size && Date.now() < end) await Bun.sleep(50);
      for (const p of this.pending.values()) this.outcomes.push({ body: p.body, ms: Date.now() - p.t0, err: "NO_ANSWER" });
      this.pending.clear();
    })();
  }
}

/** The whole history of a conversation through the HTTP API (ascending, 200 per page). */
export async function fullHistory(apiUrl: string, token: string, conv: string): Promise<{ id: string; seq: number; body: string }[]> {
  const out: { id: string; seq: number; body: string }[] = [];
  for (let after = 0; ; ) {
    const r = await http(apiUrl, "GET", `/api/conversations/${encodeURIComponent(conv)}/messages?afterSeq=${after}&limit=200`, { token });
    if (r.status !== 200) throw new Error(`history: ${r.status} ${JSON.stringify(r.body)}`);
    out.push(...r.body.messages);
    if (!r.body.hasMore || !r.body.messages.length) return out;
    after = r.body.messages[r.body.messages.length - 1].seq;
  }
}
