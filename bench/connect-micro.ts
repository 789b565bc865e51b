// Micro-benchmark of one connect process alone: how much CPU it spends per message. Not part of
// the server (nothing imports it).
//
//   bun bench/connect-micro.ts [--src DIR] [--clients 500] [--room 10] [--rate 1250]
//       [--seconds 15] [--warmup 30] [--burst 1] [--format json|msgpack|mix] [--body-bytes 100]
//       [--tick MS] [--direct | --bare] [--cpu-prof DIR]
//
// This process plays everything around connect: a fake LogicRPC server over real gRPC (auth,
// presence, send: seq per room, acks), task's push sender (one ordered ConnectRPC batcher with
// 1 ms linger, as src/task/senders.ts) that pushes each accepted message back to its room, and
// the WebSocket clients (rooms of --room; --rate sends/s in all, spread over the clients, --burst
// of them back to back from one client). The connect server runs in a child process built from
// DIR (default: this tree; gRPC plumbing and contracts also come from DIR), so two trees, e.g.
// `git archive <commit> | tar -x -C /tmp/x` with node_modules linked, can be compared.
// --tick MS: logic answers and task pushes only every MS ms, so the number of RPCs (which costs
// connect more than anything per message) no longer depends on timing, i.e. on the machine's load.
// --direct: no gRPC at all; the fake logic runs inside the connect child and pushes go straight to
// its hub, so only what connect itself does per frame and per event is measured.
// --bare: instead of connect, bench/baseline-pubsub.ts (one bare Bun.serve with native pub/sub,
// the ceiling in bench/messaging.ts) under the same clients and load, measured the same way.
// Prints one JSON line: the child's CPU (utime+stime from /proc) per message sent and in all, the
// RPCs per second, how many acks and deliveries arrived in the measured window, ack latency.
import { parseArgs } from "node:util";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import type { Result } from "../src/shared/batcher.ts";
import { silentLogger } from "../src/shared/log.ts";
import { roomConv, type Message } from "../src/shared/protocol.ts";
import type { PushEvent } from "../proto/connect.ts";
import type { JoinInfo, PresenceOp, SendAck, SendReq, Session } from "../proto/logic.ts";

const { values: o } = parseArgs({
  options: {
    role: { type: "string", default: "main" },
    src: { type: "string", default: resolve(import.meta.dir, "..") },
    logic: { type: "string" },
    clients: { type: "string", default: "500" },
    room: { type: "string", default: "10" },
    rate: { type: "string", default: "1250" },
    seconds: { type: "string", default: "15" },
    // seconds; JavaScriptCore's compiler threads stay busy for tens of seconds under load (README)
    warmup: { type: "string", default: "30" },
    burst: { type: "string", default: "1" },
    format: { type: "string", default: "json" },
    "body-bytes": { type: "string", default: "100" },
    "cpu-prof": { type: "string" },
    tick: { type: "string", default: "0" },
    direct: { type: "boolean", default: false },
    bare: { type: "boolean", default: false },
  },
});

// gRPC plumbing, codec and contracts come from the tree under test, so both ends always speak its protocol.
const SRC = resolve(o.src!);
const rpc = await import(`${SRC}/src/shared/rpc.ts`);
const { Batcher } = await import(`${SRC}/src/shared/batcher.ts`);
const { pack, unpack } = await import(`${SRC}/src/shared/codec.ts`);
const { ConnectService } = await import(`${SRC}/proto/connect.ts`);
const { LogicService } = await import(`${SRC}/proto/logic.ts`);
type PushClient = { push(req: { events: PushEvent[] }): Promise<null>; close(): void };
type PushBatcher = { call(events: PushEvent[]): Promise<null> };

if (o.role === "connect") await connectChild();
else await main();

/**
 * Logic as far as connect needs it: sessions from tokens `t<i>` (user i+1), joins, sends with a
 * seq per room. Each accepted message becomes a push event for its room, handed to `emit` (as
 * task would push it). With tickMs, replies and events wait for the next tick().
 */
function fakeLogic(tickMs: number, emit: (events: PushEvent[]) => void) {
  const seqs = new Map<string, number>();
  let msgId = 1e15;
  let due: (() => void)[] = [];
  let dueEvents: PushEvent[] = [];
  const counts = { send: 0 };
  const impl = {
    authenticate: async (req: { tokens: string[] }): Promise<Result<Session>[]> =>
      req.tokens.map((t) => {
        const i = Number(t.slice(1));
        return { ok: { userId: i + 1, userName: `u${i + 1}`, sid: `s${i}`, exp: Date.now() + 3_600_000 } };
      }),
    presence: async (req: { ops: PresenceOp[] }): Promise<Result<JoinInfo | null>[]> =>
      req.ops.map((op) => ({ ok: op.k === "join" ? { conv: roomConv(op.room), onlineCount: 1, lastSeq: 0 } : null })),
    send: async (req: { items: SendReq[] }): Promise<Result<SendAck>[]> => {
      counts.send++;
      const events: PushEvent[] = [];
      const acks = req.items.map((it) => {
        const conv = roomConv(it.room!);
        const seq = (seqs.get(conv) ?? 0) + 1;
        seqs.set(conv, seq);
        const msg: Message = { id: String(++msgId), conv, seq, from: it.from, body: it.body, ts: Date.now() };
        if (it.clientMsgId !== undefined) msg.clientMsgId = it.clientMsgId;
        events.push({ t: "m", msg, room: it.room! });
        return { ok: { id: msg.id, conv, seq, ts: msg.ts } };
      });
      if (tickMs) {
        for (const e of events) dueEvents.push(e);
        await new Promise<void>((res) => due.push(res));
      } else queueMicrotask(() => emit(events)); // after the reply, as from task
      return acks;
    },
    roomInfo: async () => ({ roomId: "", onlineCount: 0, members: [], lastSeq: 0 }),
    history: async () => ({ messages: [], hasMore: false }),
  };
  const tick = () => {
    const d = due;
    due = [];
    for (const f of d) f();
    if (!dueEvents.length) return;
    emit(dueEvents);
    dueEvents = [];
  };
  return { impl, tick, counts };
}

/**
 * The connect server under test, from the tree given by --src, with LogicRPC at --logic; or with
 * --direct, with the fake logic in this process and pushes applied to its hub directly: no gRPC
 * at all, so only what connect does per frame and per event is measured.
 */
async function connectChild(): Promise<void> {
  const { ConnectServer } = await import(`${SRC}/src/connect/server.ts`);
  const { loadConfig } = await import(`${SRC}/src/shared/config.ts`);
  const { config } = loadConfig({}, { host: "127.0.0.1", connectPort: 0, connectRpcPort: 0 });
  const tickMs = Number(o.tick);
  let server: { hub: { apply(e: PushEvent[]): void } } | undefined;
  const fake = o.direct ? fakeLogic(tickMs, (events) => server!.hub.apply(events)) : undefined;
  if (fake && tickMs) setInterval(fake.tick, tickMs);
  const s = new ConnectServer({
    config,
    log: silentLogger,
    logic: fake ? fake.impl : rpc.makeClient(LogicService, o.logic!),
    discovery: { register: async () => ({ update: async () => {}, close: async () => {} }) },
    instanceId: "connect-bench",
  });
  server = s as unknown as typeof server; // hub is private: reached into for --direct only
  await s.start();
  console.log(JSON.stringify({ wsUrl: s.wsUrl, rpcAddr: s.rpcAddr }));
  process.on("SIGTERM", () => void s.stop().then(() => process.exit(0)));
}

function cpuTicks(pid: number): { user: number; sys: number } {
  const s = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
  return { user: Number(f[11]), sys: Number(f[12]) };
}

async function main(): Promise<void> {
  const clients = Number(o.clients);
  const roomSize = Number(o.room);
  const rate = Number(o.rate);
  const burst = Number(o.burst);
  const pad = "x".repeat(Number(o["body-bytes"]));
  const tickMs = Number(o.tick);

  // --- fake logic behind gRPC, and task's push sender (unless --direct) ---
  /** RPCs in each direction: their count, more than the messages, sets connect's gRPC cost. */
  const calls = { send: 0, push: 0 };
  let pushSender: PushBatcher | undefined;
  let push: PushClient | undefined;
  const fake = fakeLogic(tickMs, (events) => {
    if (tickMs) {
      calls.push++;
      void push!.push({ events }).catch(() => {});
    } else void pushSender!.call(events).catch(() => {});
  });
  const unimpl = async () => {
    throw new Error("not in this bench");
  };
  const logic = o.direct || o.bare
    ? undefined
    : await rpc.startServer(
        // Every method of the tree's LogicService that connect does not use on this path (they differ between trees).
        (s: unknown) => rpc.addService(s, LogicService, { ...Object.fromEntries((LogicService.methods as string[]).map((m) => [m, unimpl])), ...fake.impl }, silentLogger),
        "127.0.0.1",
        0,
      );

  // --- the connect child ---
  const env: Record<string, string | undefined> = { ...process.env };
  if (o["cpu-prof"]) env.BUN_OPTIONS = `--cpu-prof --cpu-prof-dir=${resolve(o["cpu-prof"])}`;
  const args = ["--role", "connect", "--src", o.src!, "--tick", String(tickMs)];
  if (logic) args.push("--logic", `127.0.0.1:${logic.port}`);
  else args.push("--direct");
  const cmd = o.bare ? [resolve(import.meta.dir, "baseline-pubsub.ts"), "0", "127.0.0.1"] : [import.meta.path, ...args];
  const child = Bun.spawn(["bun", ...cmd], {
    stdout: "pipe",
    stderr: "inherit",
    env,
  });
  const reader = child.stdout.getReader();
  let line = "";
  while (!line.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error("connect child exited");
    line += new TextDecoder().decode(value);
  }
  const first = line.split("\n")[0];
  // The bare baseline prints its port; connect its URLs.
  const { wsUrl, rpcAddr } = o.bare ? { wsUrl: `ws://127.0.0.1:${first.trim()}/ws`, rpcAddr: "" } : (JSON.parse(first) as { wsUrl: string; rpcAddr: string });
  const client: PushClient | undefined = o.bare ? undefined : rpc.makeClient(ConnectService, rpcAddr, 3000);
  push = client;
  pushSender = new Batcher(
    async (items: PushEvent[][]) => {
      calls.push++;
      await client!.push({ events: items.length === 1 ? items[0] : items.flat() });
      return items.map(() => ({ ok: null }));
    },
    { concurrency: 1, maxBatch: 16, lingerMs: 1 },
  );

  if (tickMs && logic) setInterval(fake.tick, tickMs);

  // --- clients ---
  let acks = 0;
  let deliveries = 0;
  let errors = 0;
  const socks: { ws: WebSocket; room: string; binary: boolean }[] = [];
  /** Send time of each ref (= the send's number), and the ack latencies of the measured window. */
  const sentAt: number[] = [];
  let measuring = false;
  const ackMs: number[] = [];
  const onFrame = (e: MessageEvent) => {
    let op: string;
    let f: { op: string; ref?: unknown } | undefined;
    if (typeof e.data === "string") {
      op = e.data.slice(7, 10); // {"op":"ack"…
      if (op === "ack") f = JSON.parse(e.data);
    } else op = (f = unpack(new Uint8Array(e.data as ArrayBuffer)) as { op: string }).op;
    if (op === "msg") deliveries++;
    else if (op === "ack") {
      acks++;
      if (measuring) ackMs.push(performance.now() - sentAt[f!.ref as number]);
    } else if (op === "err") errors++;
  };
  for (let i = 0; i < clients; i++) {
    const token = o.bare ? `u${i + 1}` : `t${i}`;
    const binary = o.format === "msgpack" || (o.format === "mix" && i % 2 === 1);
    const ws = new WebSocket(`${wsUrl}?token=${token}${binary ? "&format=msgpack" : ""}`);
    ws.binaryType = "arraybuffer";
    await new Promise<void>((res, rej) => {
      ws.onopen = () => res();
      ws.onerror = () => rej(new Error("ws open failed"));
    });
    ws.onmessage = onFrame;
    const room = `r${Math.floor(i / roomSize)}`;
    ws.send(JSON.stringify({ op: "join", room, ref: "j" }));
    socks.push({ ws, room, binary });
  }
  await Bun.sleep(500);

  // --- load: every ~5 ms, what the rate owes since the last tick, `burst` back-to-back from one client ---
  let sent = 0;
  let next = 0;
  let owed = 0;
  let last = performance.now();
  const tick = setInterval(() => {
    const now = performance.now();
    owed += (rate * (now - last)) / 1000;
    last = now;
    while (owed >= burst) {
      owed -= burst;
      const c = socks[next];
      next = (next + 1) % socks.length;
      for (let b = 0; b < burst; b++) {
        const f = { op: "send", room: c.room, body: `${sent}:${pad}`, ref: sent };
        sentAt[sent] = performance.now();
        c.ws.send(c.binary ? pack(f) : JSON.stringify(f));
        sent++;
      }
    }
  }, 5);

  await Bun.sleep(Number(o.warmup) * 1000);
  const c0 = cpuTicks(child.pid);
  calls.send = fake.counts.send;
  const s0 = { sent, acks, deliveries, ...calls };
  measuring = true;
  const t0 = performance.now();
  await Bun.sleep(Number(o.seconds) * 1000);
  const c1 = cpuTicks(child.pid);
  measuring = false;
  ackMs.sort((a, b) => a - b);
  const pct = (q: number) => Math.round((ackMs[Math.min(ackMs.length - 1, Math.floor(q * ackMs.length))] ?? NaN) * 10) / 10;
  calls.send = fake.counts.send;
  const secs = (performance.now() - t0) / 1000;
  const n = { sent: sent - s0.sent, acks: acks - s0.acks, deliveries: deliveries - s0.deliveries, send: calls.send - s0.send, push: calls.push - s0.push };
  clearInterval(tick);
  const userMs = (c1.user - c0.user) * 10;
  const sysMs = (c1.sys - c0.sys) * 10;
  console.log(
    JSON.stringify({
      src: o.src,
      clients,
      room: roomSize,
      rate,
      burst,
      format: o.format,
      tick: tickMs,
      direct: o.direct,
      bare: o.bare,
      seconds: Math.round(secs * 10) / 10,
      sentPerSec: Math.round(n.sent / secs),
      acksPerSec: Math.round(n.acks / secs),
      deliveriesPerSec: Math.round(n.deliveries / secs),
      errors,
      sendCallsPerSec: Math.round(n.send / secs),
      pushCallsPerSec: Math.round(n.push / secs),
      connectCpuPct: Math.round(((userMs + sysMs) / 10 / secs) * 10) / 10,
      userPct: Math.round((userMs / 10 / secs) * 10) / 10,
      sysPct: Math.round((sysMs / 10 / secs) * 10) / 10,
      cpuUsPerMsg: Math.round(((userMs + sysMs) * 1000) / n.sent),
      ackMs: { p50: pct(0.5), p99: pct(0.99) },
    }),
  );
  for (const s of socks) s.ws.close();
  await Bun.sleep(200);
  child.kill("SIGTERM");
  await child.exited;
  push?.close();
  logic?.server.forceShutdown();
  process.exit(0);
}
