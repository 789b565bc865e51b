// The connect tier's calls to logic. Hot-path calls are batched (src/shared/batcher.ts):
// - authenticate: concurrency 4, retried once (a read);
// - presence: concurrency 1, so ops reach logic in the order they happened (join before leave,
//   connect before disconnect); retried, which is safe as logic applies each op once per connection;
// - send: SEND_LANES batchers of concurrency 1; a connection always uses the same lane, so its
//   sends reach logic, which assigns seqs in batch order, in the order they were sent. Items carry
//   a retryKey, which makes the transport-level retries safe.
import { Batcher } from "../shared/batcher.ts";
import { sendBatcher } from "../shared/send-deadline.ts";
import type { Client } from "../shared/rpc.ts";
import type { JoinInfo, LogicApi, PresenceOp, ReadReq, ReadRes, SendAck, SendReq, Session } from "../../proto/logic.ts";

/** The LogicRPC methods connect uses: a real Client<LogicApi>, or any object with them (tests). */
export type LogicPort = Pick<Client<LogicApi>, "authenticate" | "presence" | "send" | "roomInfo" | "history" | "markRead" | "typing">;

/**
 * One lane: every lane is its own batch cycle (call, reply), so each extra lane multiplies
 * the send RPCs, and RPCs are most of connect's CPU. Measured with bench/connect-micro.ts at
 * 1,250 sends/s: 2 lanes made ~370 send calls/s, 1 lane ~190, for 15-20 % less connect CPU per
 * message and no worse ack latency. Raise it only if one call in flight per instance cannot keep up.
 */
const SEND_LANES = 1;
const AUTH_CONCURRENCY = 4;

export class Upstream {
  readonly auth: Batcher<string, Session>;
  readonly presence: Batcher<PresenceOp, JoinInfo | null>;
  /** (v1.1) WS read ops: any order is fine (readSeq only grows), so concurrency 4, retried (idempotent). */
  readonly reads: Batcher<ReadReq, ReadRes>;
  private readonly lanes: Batcher<SendReq, SendAck>[] = [];

  /**
   * sendTimeoutMs: IM_SEND_TIMEOUT_MS, each send answered within it (src/shared/send-deadline.ts);
   * sendLingerMs: IM_SEND_LINGER_MS, how long the first send after an idle spell waits for company.
   */
  constructor(readonly logic: LogicPort, sendTimeoutMs = 5000, sendLingerMs = 0) {
    this.auth = new Batcher((tokens) => logic.authenticate({ tokens }, { retries: 1 }), { concurrency: AUTH_CONCURRENCY });
    this.presence = new Batcher((ops) => logic.presence({ ops }, { retries: 2 }), { concurrency: 1 });
    this.reads = new Batcher((items) => logic.markRead({ items }, { retries: 2 }), { concurrency: 4 });
    // Sends do not linger by default (IM_SEND_LINGER_MS=0): the first send after an idle spell goes
    // to logic at once, and sends made while a call is in flight go together in the next (batching
    // comes from the call in flight, not from waiting). A linger of 5 ms took 28-45 % off logic's
    // CPU per message at 1,000 msgs/s and added 4-8 ms of p99, with no consistent effect at 2,500
    // and 5,000 (bench/journal/2026-11-30.md, "send linger"): latency first by default.
    for (let i = 0; i < SEND_LANES; i++) this.lanes.push(sendBatcher((req, opts) => logic.send(req, opts), sendTimeoutMs, { concurrency: 1, lingerMs: sendLingerMs }));
  }

  send(connNo: number, item: SendReq): Promise<SendAck> {
    return this.lanes[connNo % SEND_LANES].call(item);
  }
}
