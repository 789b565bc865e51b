// Test support for the connect tier: an in-memory fake of the LogicRPC methods connect uses, a
// discovery stub, a connect server on port 0, and a WebSocket client that waits for frames.
import { afterAll, beforeAll } from "bun:test";
import { ConnectServer } from "../../src/connect/server.ts";
import type { LogicPort } from "../../src/connect/upstream.ts";
import type { Result } from "../../src/shared/batcher.ts";
import { pack, unpack } from "../../src/shared/codec.ts";
import { loadConfig, type Config } from "../../src/shared/config.ts";
import type { InstanceInfo, Registration } from "../../src/shared/discovery.ts";
import { AppError, type WireError } from "../../src/shared/errors.ts";
import { silentLogger } from "../../src/shared/log.ts";
import { LIMITS, dmConv, roomConv, type Message, type UserRef } from "../../src/shared/protocol.ts";
import { makeClient, type Client } from "../../src/shared/rpc.ts";
import { ClusterAuth } from "../../src/shared/cluster-auth.ts";
import { ConnectService, type ConnectApi } from "../../proto/connect.ts";
import type { HistoryReq, HistoryRes, JoinInfo, PresenceOp, ReadReq, ReadRes, RoomInfo, SendAck, SendReq, Session } from "../../proto/logic.ts";

const fail = (code: WireError["code"], message: string) => ({ err: { code, message } });

/** In-memory LogicRPC: sessions, per-room joined-connection counts, seqs and stored messages. */
export class FakeLogic implements LogicPort {
  readonly sessions = new Map<string, Session>();
  readonly names = new Map<number, string>();
  readonly presenceOps: PresenceOp[] = [];
  readonly sendBatches: SendReq[][] = [];
  readonly historyReqs: HistoryReq[] = [];
  /** room → userId → joined connections */
  readonly members = new Map<string, Map<number, number>>();
  readonly messages = new Map<string, Message[]>();
  /** Users whose sends are answered RATE_LIMITED. */
  readonly limited = new Set<number>();
  /** When set, every call fails as an unreachable logic would. */
  down = false;
  /** When set, history calls wait for it (requests held in flight). */
  gate?: Promise<void>;
  /** When set, presence calls (join, leave) wait for it. */
  presenceGate?: Promise<void>;
  private uid = 0;
  private msgId = 1000;

  user(name = `user${this.uid + 1}`, exp = Date.now() + 3_600_000): { user: UserRef; token: string; sid: string } {
    const user = { userId: ++this.uid, userName: name };
    this.names.set(user.userId, name);
    return { user, ...this.session(user, exp) };
  }

  /** A further session (token) of an existing user. */
  session(user: UserRef, exp = Date.now() + 3_600_000): { token: string; sid: string } {
    const token = crypto.randomUUID();
    const sid = `sid-${token.slice(0, 8)}`;
    this.sessions.set(token, { ...user, sid, exp });
    return { token, sid };
  }

  private check() {
    if (this.down) throw new AppError("UNAVAILABLE", "service temporarily unavailable");
  }

  /** Read positions (v1.1): userId → conv → readSeq; the real rules are tested against the real tiers. */
  readonly reads = new Map<number, Map<string, number>>();
  readonly typings: { user: UserRef; conv: string }[] = [];

  async markRead(req: { items: ReadReq[] }): Promise<Result<ReadRes>[]> {
    this.check();
    return req.items.map((r) => ({ ok: this.read1(r) }));
  }

  private read1(req: ReadReq): ReadRes {
    const mine = this.reads.get(req.user.userId) ?? new Map<string, number>();
    this.reads.set(req.user.userId, mine);
    const last = this.messages.get(req.conv)?.length ?? 0;
    const readSeq = Math.max(mine.get(req.conv) ?? 0, Math.min(req.seq, last));
    mine.set(req.conv, readSeq);
    return { conv: req.conv, readSeq };
  }

  async typing(req: { user: UserRef; conv: string }): Promise<null> {
    this.check();
    this.typings.push(req);
    return null;
  }

  async authenticate(req: { tokens: string[] }): Promise<Result<Session>[]> {
    this.check();
    return req.tokens.map((t) => {
      const s = this.sessions.get(t);
      return s ? { ok: s } : fail("UNAUTHENTICATED", "invalid or expired token");
    });
  }

  async presence(req: { ops: PresenceOp[] }): Promise<Result<JoinInfo | null>[]> {
    this.check();
    await this.presenceGate;
    return req.ops.map((op) => {
      this.presenceOps.push(op);
      if (op.k !== "join" && op.k !== "leave") return { ok: null };
      if (op.room.startsWith("deny")) return fail("FORBIDDEN", "room closed");
      const m = this.members.get(op.room) ?? new Map<number, number>();
      this.members.set(op.room, m);
      const n = (m.get(op.user.userId) ?? 0) + (op.k === "join" ? 1 : -1);
      if (n > 0) m.set(op.user.userId, n);
      else m.delete(op.user.userId);
      if (op.k === "leave") return { ok: null };
      const conv = roomConv(op.room);
      return { ok: { conv, onlineCount: m.size, lastSeq: this.lastSeq(conv) } };
    });
  }

  async roomInfo(req: { room: string }): Promise<RoomInfo> {
    this.check();
    const m = this.members.get(req.room) ?? new Map();
    const members = [...m.keys()].map((userId) => ({ userId, userName: this.names.get(userId) ?? "" }));
    return { roomId: req.room, onlineCount: members.length, members, lastSeq: this.lastSeq(roomConv(req.room)) };
  }

  async send(req: { items: SendReq[] }): Promise<Result<SendAck>[]> {
    this.check();
    this.sendBatches.push(req.items);
    return req.items.map((it) => {
      if (this.limited.has(it.from.userId)) return fail("RATE_LIMITED", "slow down");
      const len = [...it.body].length;
      if (len < 1 || len > LIMITS.maxBodyCodePoints) return fail("BAD_REQUEST", "body must be 1-4000 characters");
      if (it.toUserId !== undefined && !this.names.has(it.toUserId)) return fail("NOT_FOUND", "no such user");
      const conv = it.room !== undefined ? roomConv(it.room) : dmConv(it.from.userId, it.toUserId!);
      const list = this.messages.get(conv) ?? [];
      this.messages.set(conv, list);
      const msg: Message = { id: String(++this.msgId), conv, seq: list.length + 1, from: it.from, body: it.body, ts: Date.now() };
      if (it.clientMsgId !== undefined) msg.clientMsgId = it.clientMsgId;
      list.push(msg);
      return { ok: { id: msg.id, conv, seq: msg.seq, ts: msg.ts } };
    });
  }

  async history(req: HistoryReq): Promise<HistoryRes> {
    this.check();
    this.historyReqs.push(req);
    await this.gate;
    const list = (this.messages.get(req.conv) ?? []).filter((m) => m.seq > (req.afterSeq ?? 0));
    const limit = Math.min(req.limit ?? 50, req.maxLimit);
    return { messages: list.slice(0, limit), hasMore: list.length > limit };
  }

  lastSeq(conv: string): number {
    return this.messages.get(conv)?.length ?? 0;
  }
}

/** Records what connect registers; stands in for Discovery. */
export class FakeDiscovery {
  readonly infos: InstanceInfo[] = [];
  closed = false;

  async register(_service: string, info: InstanceInfo): Promise<Registration> {
    this.infos.push(info);
    return {
      update: async (next) => void this.infos.push(next),
      close: async () => {
        this.closed = true;
      },
    };
  }

  get latest(): InstanceInfo | undefined {
    return this.infos.at(-1);
  }
}

export interface TestConnect {
  server: ConnectServer;
  logic: FakeLogic;
  discovery: FakeDiscovery;
  config: Readonly<Config>;
  /** ConnectRPC client to this instance, as task would use it. */
  rpc: Client<ConnectApi>;
  http: string;
  wsUrl(token: string, format?: "json" | "msgpack"): string;
  stop(): Promise<void>;
}

let instanceNo = 0;

export async function startConnect(overrides: Partial<Config> = {}, logic = new FakeLogic()): Promise<TestConnect> {
  const { config } = loadConfig({}, { host: "127.0.0.1", connectPort: 0, connectRpcPort: 0, metricsHost: "127.0.0.1", metricsPort: 0, ...overrides });
  const discovery = new FakeDiscovery();
  const server = new ConnectServer({ config, log: silentLogger, logic, discovery, instanceId: `connect-test-${++instanceNo}` });
  await server.start();
  const rpc = makeClient<ConnectApi>(ConnectService, server.rpcAddr, undefined, new ClusterAuth(config.clusterSecrets));
  return {
    server,
    logic,
    discovery,
    config,
    rpc,
    http: `http://127.0.0.1:${server.port}`,
    wsUrl: (token, format) => `ws://127.0.0.1:${server.port}/ws?token=${encodeURIComponent(token)}${format ? `&format=${format}` : ""}`,
    stop: async () => {
      rpc.close();
      await server.stop();
    },
  };
}

/**
 * A connect instance (fake logic) for one test file: started in beforeAll, stopped in afterAll
 * with every client opened through open(). Call at the file's top level.
 */
export function connectPerFile(overrides: Partial<Config> = {}): { readonly c: TestConnect; open(token: string, format?: "json" | "msgpack"): Promise<WsClient> } {
  let t: TestConnect | undefined;
  const clients: WsClient[] = [];
  beforeAll(async () => {
    t = await startConnect(overrides);
  });
  afterAll(async () => {
    for (const cl of clients) cl.ws.close();
    await t?.stop();
  });
  return {
    get c() {
      if (!t) throw new Error("connectPerFile: used before beforeAll ran");
      return t;
    },
    async open(token, format) {
      const cl = await WsClient.open(this.c.wsUrl(token, format));
      clients.push(cl);
      return cl;
    },
  };
}

/** Joins a room and waits for its `joined` reply. */
export async function joinRoom(ws: WsClient, room: string): Promise<void> {
  ws.send({ op: "join", room, ref: `j-${room}` });
  await ws.op("joined", `j-${room}`);
}

type Frame = Record<string, any>;

/** A WebSocket client that decodes frames (JSON text or msgpack binary) and lets tests wait for them. */
export class WsClient {
  /** Received frames not yet taken by next(). */
  readonly frames: Frame[] = [];
  /** Every received frame, in order. */
  readonly all: Frame[] = [];
  /** Kind of every received frame, in order: "text" or "binary". */
  readonly kinds: ("text" | "binary")[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  private waiters: (() => void)[] = [];

  private constructor(readonly ws: WebSocket) {
    ws.binaryType = "arraybuffer";
    ws.onmessage = (e) => {
      const binary = typeof e.data !== "string";
      this.kinds.push(binary ? "binary" : "text");
      const frame = binary ? (unpack(new Uint8Array(e.data as ArrayBuffer)) as Frame) : JSON.parse(e.data as string);
      this.frames.push(frame);
      this.all.push(frame);
      this.wake();
    };
    this.closed = new Promise((res) => {
      ws.addEventListener("close", (e) => {
        res({ code: e.code, reason: e.reason });
        this.wake();
      });
    });
  }

  static open(url: string, timeoutMs = 5000): Promise<WsClient> {
    const ws = new WebSocket(url);
    const client = new WsClient(ws);
    return new Promise((res, rej) => {
      const t = setTimeout(() => rej(new Error("WebSocket open timed out")), timeoutMs);
      ws.addEventListener("open", () => {
        clearTimeout(t);
        res(client);
      });
      ws.addEventListener("close", (e) => {
        clearTimeout(t);
        rej(new Error(`WebSocket closed before opening: ${e.code}`));
      });
    });
  }

  private wake() {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Sends an object as JSON text, or as msgpack binary with binary=true. */
  send(frame: unknown, binary = false): void {
    this.ws.send(binary ? pack(frame) : JSON.stringify(frame));
  }

  raw(data: string | Uint8Array): void {
    this.ws.send(data);
  }

  /** Removes and returns the first received frame matching pred, waiting for it up to timeoutMs. */
  async next(pred: (f: Frame) => boolean = () => true, timeoutMs = 5000): Promise<Frame> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const i = this.frames.findIndex(pred);
      if (i >= 0) return this.frames.splice(i, 1)[0];
      const left = end - Date.now();
      if (left <= 0) throw new Error(`no matching frame within ${timeoutMs} ms; have ${JSON.stringify(this.frames).slice(0, 500)}`);
      await new Promise<void>((res) => {
        const t = setTimeout(res, left);
        this.waiters.push(() => {
          clearTimeout(t);
          res();
        });
      });
    }
  }

  /** The next frame with this op (and ref, if given). */
  op(op: string, ref?: unknown, timeoutMs?: number): Promise<Frame> {
    return this.next((f) => f.op === op && (ref === undefined || f.ref === ref), timeoutMs);
  }

  /** A round trip: every frame the server sent before answering this ping has arrived. */
  async flush(): Promise<void> {
    const ref = `flush-${crypto.randomUUID()}`;
    this.send({ op: "ping", ref });
    await this.op("pong", ref);
  }

  async closeAndWait(): Promise<void> {
    this.ws.close();
    await this.closed;
  }
}
