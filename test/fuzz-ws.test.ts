// Property-based fuzzing of the WebSocket protocol (issue 10): at least 10,000 generated frames
// (JSON text and MessagePack binary; every field with every type; extension types; deep, huge and
// ill-formed values; random and mutated bytes) against a real cluster (api, logic, task, connect
// on real Redis, MariaDB and etcd). Every frame must get a contract reply (a direct reply frame
// whose ref, if any, is the frame's valid ref; error codes from the catalog) or a contract close
// code; no process may end; a bystander joined to a room keeps receiving every message sent there.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { ERROR_CODES } from "../src/shared/errors.ts";
import { decodeJson, decodeMsgpack } from "../src/shared/wire-codec.ts";
import { startCluster, type TestCluster } from "./support/cluster.ts";
import { WsClient } from "./support/connect.ts";
import { CONTRACT_CLOSES, FuzzSocket, frameArbitrary, sampleInChunks, type Format, type Generated } from "./support/fuzz.ts";
import { eventually, http, registerUser } from "./support/http.ts";

/** Frames per run (the issue asks for at least 10,000); FUZZ_FRAMES raises it, FUZZ_SEED replays a run. */
const FRAMES = Math.max(10_000, Number(process.env.FUZZ_FRAMES ?? 0));
const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31);
/** Sockets fuzzed at once, each sending one frame at a time. */
const LANES: Format[] = ["json", "msgpack", "json", "msgpack"];
const REPLY_TIMEOUT_MS = 15_000;

const hex = (h: string) => Uint8Array.from(Buffer.from(h, "hex"));
/** The two frames of the issue that ended a connect process, first on every lane. */
const FIXED: Generated[] = [
  { data: hex("82a26f70a470696e67a3726566d6690000000091d67000000000"), kind: "fixed: structured-clone ref ping" },
  { data: hex("82a26f70a470696e67a3726566d842" + "ff".repeat(16)), kind: "fixed: 128-bit integer ref ping" },
  { data: hex("84a26f70a473656e64a4726f6f6da666757a7a2d61a4626f6479a26869a3726566d842" + "01".repeat(16)), kind: "fixed: 128-bit integer ref send" },
  { data: JSON.stringify({ op: "ping", pad: "x".repeat((1 << 20) + 10) }), kind: "fixed: frame over 1 MiB" },
];

/** A lane's frames: FIXED, then count generated ones. */
function* lanes(format: Format, count: number, seed: number): Generator<Generated> {
  yield* FIXED;
  yield* sampleInChunks(frameArbitrary(format), count, seed);
}

let c: TestCluster;
const problems: string[] = [];
const onError = (e: unknown) => problems.push(`uncaught in the test process (a tier would have died): ${String(e)}`);

beforeAll(async () => {
  process.on("unhandledRejection", onError);
  process.on("uncaughtException", onError);
  // A 10 s etcd lease (tests default to 2 s): this suite is about input, not failover, and on a
  // loaded shared machine a 2 s lease expires mid-run; logic then drops the live connect
  // instance's room routes and the bystander misses messages (seen at load 17; reported apart).
  c = await startCluster({ logic: 1, api: 1, connect: 1, task: 1, config: { rateLimitPerSec: 1000, rateLimitBurst: 1000, leaseTtlSec: 10 } });
});
afterAll(async () => {
  process.off("unhandledRejection", onError);
  process.off("uncaughtException", onError);
  await c?.stop();
});

/** The op a frame decodes to (as the server's own decoders read it), if it decodes to an object. */
function opOf(data: string | Uint8Array): unknown {
  try {
    const v = typeof data === "string" ? decodeJson(data) : decodeMsgpack(data);
    return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as { op?: unknown }).op : undefined;
  } catch {
    return undefined;
  }
}

const validRef = (r: unknown) => (typeof r === "string" && r.length <= 64 && r.isWellFormed()) || Number.isSafeInteger(r);

/** Checks one answer against the contract; returns what is wrong, if anything. */
function judge(g: Generated, op: unknown, answer: Awaited<ReturnType<FuzzSocket["exchange"]>>): string | undefined {
  if (!answer) return "no reply and no close";
  if ("none" in answer) return op === "typing" ? undefined : "no reply to a frame that needs one";
  if ("close" in answer) return CONTRACT_CLOSES.has(answer.close) ? undefined : `closed with ${answer.close}`;
  const r = answer.reply;
  if (r.op === "error" && !(typeof r.code === "string" && r.code in ERROR_CODES)) return `error code ${String(r.code)}`;
  if (r.op === "error" && r.code === "INTERNAL") return "INTERNAL error";
  if ("ref" in r) {
    if (!validRef(r.ref)) return `echoed an invalid ref ${String(r.ref)}`;
    if (g.obj && r.ref !== g.obj.ref) return `echoed ref ${String(r.ref)} for ${String(g.obj.ref)}`;
  }
  return undefined;
}

test(`${FRAMES} generated frames get contract answers; nothing dies; a bystander keeps receiving (seed ${SEED})`, async () => {
  const base = c.apiUrl();
  const bystanderUser = await registerUser(base);
  const sender = await registerUser(base);
  const bystander = await WsClient.open(c.wsUrl(0, bystanderUser.token));
  bystander.send({ op: "join", room: "fuzz-a", ref: "j" });
  await bystander.op("joined", "j");

  const users = await Promise.all(LANES.map(() => registerUser(base)));
  const counts = new Map<string, number>();
  const answers = new Map<string, number>();
  let sent = 0;
  let closes = 0;
  let ticks = 0;
  const perLane = Math.ceil(FRAMES / LANES.length);

  const lane = async (i: number) => {
    const format = LANES[i];
    const url = c.wsUrl(0, users[i].token, format === "msgpack" ? "msgpack" : undefined);
    let ws = await FuzzSocket.open(url);
    for (const g of lanes(format, perLane, SEED + i)) {
      if (ws.closeCode !== undefined) ws = await FuzzSocket.open(url);
      // Random and mutated bytes may still decode to a valid frame (a `typing` has no reply, a
      // `read` is answered `read`): the op is what the server will read, not what was generated.
      const op = g.obj ? g.obj.op : opOf(g.data);
      const answer = await ws.exchange(g.data, op, REPLY_TIMEOUT_MS);
      sent++;
      counts.set(g.kind, (counts.get(g.kind) ?? 0) + 1);
      const wrong = judge(g, op, answer);
      if (wrong) problems.push(`${wrong}: lane ${format} ${g.kind} ${typeof g.data === "string" ? JSON.stringify(g.data.slice(0, 200)) : Buffer.from(g.data.subarray(0, 100)).toString("hex")} → ${JSON.stringify(answer)?.slice(0, 300)}`);
      if (answer && "close" in answer) closes++;
      const a = !answer ? "none" : "close" in answer ? `close ${answer.close}` : "reply" in answer ? `${answer.reply.op}${answer.reply.code ? ` ${answer.reply.code}` : ""}` : "no reply (typing)";
      answers.set(a, (answers.get(a) ?? 0) + 1);
      if (problems.length > 20) throw new Error(problems.join("\n"));
      // Every 250 frames somebody else talks in the bystander's room.
      if (i === 0 && sent % 250 < 1) {
        const r = await http(base, "POST", "/api/rooms/fuzz-a/messages", { token: sender.token, body: { body: `tick ${++ticks}` } });
        if (r.status !== 202) problems.push(`tick send answered ${r.status}`);
      }
    }
    ws.ws.close();
  };
  const started = Date.now();
  await Promise.all(LANES.map((_, i) => lane(i)));
  const ms = Date.now() - started;

  // The bystander got every tick (and its socket is still open), and connect still serves.
  const last = `tick ${ticks}`;
  let bystanderClose: unknown;
  void bystander.closed.then((c) => (bystanderClose = c));
  const got = () => bystander.all.filter((f) => f.op === "msg" && f.from?.userId === sender.userId).map((f) => f.body);
  await eventually(() => got().includes(last), 15_000, "the bystander's last tick").catch((e) => {
    throw new Error(`${e.message}; bystander got ${JSON.stringify(got())}, closed: ${JSON.stringify(bystanderClose)}`);
  });
  expect(got()).toEqual(Array.from({ length: ticks }, (_, k) => `tick ${k + 1}`));
  bystander.send({ op: "ping", ref: "end" });
  await bystander.op("pong", "end");
  expect((await fetch(`http://127.0.0.1:${c.connect[0].port}/healthz`)).status).toBe(200);
  console.log(JSON.stringify({ fuzz: "ws", seed: SEED, frames: sent, closes, ticks, ms, kinds: Object.fromEntries(counts), answers: Object.fromEntries(answers) }));
  expect(problems).toEqual([]);
  expect(sent).toBeGreaterThanOrEqual(10_000);
  bystander.ws.close();
});
