// One ordered sender per live connect instance, shared by all partitions of this worker: pushes
// made while a call is in flight go out together in the next call (a gRPC call costs ~0.3 ms of
// CPU, so never one per message), and with concurrency 1 they arrive in the order they were made.
// Instances come from discovery; a client is closed when its instance vanishes or moves.
import { Batcher } from "../shared/batcher.ts";
import type { Discovery, Instances, ServiceWatch } from "../shared/discovery.ts";
import type { Logger } from "../shared/log.ts";
import type { Registry } from "prom-client";
import { localClient, makeClient, type Client } from "../shared/rpc.ts";
import type { ClusterAuth } from "../shared/cluster-auth.ts";
import { instrumentClient } from "../shared/rpc-metrics.ts";
import { CONNECT_SERVICE, ConnectService, type ConnectApi, type PushEvent } from "../../proto/connect.ts";

interface Peer {
  addr: string;
  client: Client<ConnectApi>;
  batcher: Batcher<PushEvent[], null>;
}

export interface SendersOptions {
  discovery: Discovery;
  log: Logger;
  /** Deadline of one push call in ms (default 3000). */
  deadlineMs?: number;
  /** Partition batches combined into one call at most (default 16, i.e. up to 8000 events). */
  maxBatch?: number;
  onCall?: (ok: boolean) => void;
  /** The cluster credentials sent on every push (see src/shared/cluster-auth.ts). */
  auth?: ClusterAuth;
  /** Where bunchat_rpc_client_duration_seconds of the push calls goes (none if unset). */
  registry?: Registry;
  /** Connect instances co-located in this process (src/bin/node.ts), by instance id: pushed to in-process. */
  local?: ReadonlyMap<string, ConnectApi>;
}

export class ConnectSenders {
  private watch?: ServiceWatch;
  private readonly peers = new Map<string, Peer>();

  constructor(private readonly o: SendersOptions) {}

  async start(): Promise<void> {
    this.watch = await this.o.discovery.watch(CONNECT_SERVICE, (m) => this.prune(m));
  }

  /** Whether the instance is registered in discovery now. */
  isLive(id: string): boolean {
    return !!this.watch?.instances().get(id)?.addr;
  }

  /** Pushes events to one instance, after everything sent to it before; rejects if the call failed. */
  send(id: string, events: PushEvent[]): Promise<null> {
    const peer = this.peer(id);
    if (!peer) return Promise.reject(new Error(`connect instance ${id} is not registered`));
    return peer.batcher.call(events);
  }

  async close(): Promise<void> {
    await this.watch?.close();
    for (const p of this.peers.values()) p.client.close();
    this.peers.clear();
  }

  private peer(id: string): Peer | undefined {
    const info = this.watch?.instances().get(id);
    if (!info?.addr) return undefined;
    let peer = this.peers.get(id);
    if (peer && peer.addr === info.addr) return peer;
    peer?.client.close();
    const here = this.o.local?.get(id);
    const raw = here
      ? localClient<ConnectApi>(ConnectService, here, this.o.log, this.o.deadlineMs ?? 3000)
      : makeClient<ConnectApi>(ConnectService, info.addr, this.o.deadlineMs ?? 3000, this.o.auth);
    const client = this.o.registry ? instrumentClient(ConnectService, raw, this.o.registry) : raw;
    const batcher = new Batcher<PushEvent[], null>(
      async (items) => {
        try {
          await client.push({ events: items.length === 1 ? items[0] : items.flat() });
          this.o.onCall?.(true);
        } catch (err) {
          this.o.onCall?.(false);
          throw err;
        }
        return items.map(() => ({ ok: null }));
      },
      // No linger: the partitions' batches of one read reach send() in the same event-loop turn and
      // go out together anyway, and the push group's read interval (IM_PUSH_INTERVAL_MS) already
      // gathers a trickle; a 1 ms timer per call was one more wake-up of this process per call.
      { concurrency: 1, maxBatch: this.o.maxBatch ?? 16 },
    );
    peer = { addr: info.addr, client, batcher };
    this.peers.set(id, peer);
    this.o.log.debug("connect client opened", { instance: id, addr: info.addr });
    return peer;
  }

  private prune(live: Instances): void {
    for (const [id, peer] of this.peers) {
      if (live.get(id)?.addr === peer.addr) continue;
      peer.client.close();
      this.peers.delete(id);
      this.o.log.debug("connect client closed", { instance: id });
    }
  }
}
