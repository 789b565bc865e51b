// Resilient test clients for fault tests: a paced HTTP sender that retries with its clientMsgId
// (safe retries), and a WebSocket receiver that, like a real client, reconnects through
// /api/gateway after a close and syncs from the last seq it holds.
import { WsClient } from "./connect.ts";
import { http } from "./http.ts";

export interface Ack {
  id: string;
  seq: number;
}

export class PacedSender {
  readonly acked: Ack[] = [];
  failures = 0;
  private running = true;
  private done: Promise<void>;

  constructor(apiUrl: () => string, token: string, room: string, everyMs = 20) {
    this.done = (async () => {
      for (let n = 0; this.running; n++) {
        const clientMsgId = `c${n}`;
        for (let attempt = 0; attempt < 20; attempt++) {
          const r = await http(apiUrl(), "POST", `/api/rooms/${room}/messages`, { token, body: { body: `m${n}`, clientMsgId } }).catch(() => ({ status: 0, body: null }));
          if (r.status === 202) {
            this.acked.push({ id: r.body.id, seq: r.body.seq });
            break;
          }
          this.failures++;
          await Bun.sleep(100);
        }
        await Bun.sleep(everyMs);
      }
    })();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.done;
  }
}

export class Receiver {
  /** seq → id of every message received, live or by sync. */
  readonly got = new Map<number, string>();
  duplicates = 0;
  reconnects = 0;
  private ws?: WsClient;
  private closed = false;

  constructor(
    private readonly apiUrl: string,
    private readonly token: string,
    private readonly room: string,
  ) {}

  /** The highest seq such that every seq up to it was received. */
  contiguous(): number {
    let s = 0;
    while (this.got.has(s + 1)) s++;
    return s;
  }

  async start(wsUrl?: string): Promise<void> {
    for (;;) {
      try {
        const url = wsUrl ?? (await http(this.apiUrl, "GET", "/api/gateway")).body.wsUrl;
        const ws = await WsClient.open(`${url}?token=${encodeURIComponent(this.token)}`);
        this.ws = ws;
        ws.ws.addEventListener("message", (e) => {
          const f = JSON.parse(e.data as string);
          if (f.op !== "msg") return;
          if (this.got.has(f.seq)) this.duplicates++;
          this.got.set(f.seq, f.id);
        });
        ws.send({ op: "join", room: this.room, ref: "j" });
        await ws.op("joined", "j", 10_000);
        for (let more = true; more; ) {
          ws.send({ op: "sync", conv: `room:${this.room}`, afterSeq: this.contiguous(), ref: "s" });
          more = (await ws.op("synced", "s", 10_000)).hasMore;
        }
        void ws.closed.then(() => {
          if (this.closed) return;
          this.reconnects++;
          void this.start();
        });
        return;
      } catch {
        if (this.closed) return;
        wsUrl = undefined;
        await Bun.sleep(200);
      }
    }
  }

  stop(): void {
    this.closed = true;
    this.ws?.ws.close();
  }
}
