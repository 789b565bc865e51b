// Real SIGSTOPs of a real redis-server (appendfsync always, as in the fsync ack mode) under a
// steady stream of send batches through logic's Messages: every send is answered within its
// budget; a send answered UNAVAILABLE as "not stored" is never stored; one answered UNAVAILABLE
// with its outcome unknown (IN_DOUBT_MESSAGE) may have been, and every such send that was stored
// is counted by the audit (README "A send whose outcome is unknown"). How often a stop lands in
// the window between a script and its reply varies from run to run; the counts are logged.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { createService, type Service } from "../src/infra/service.ts";
import { redisSpec } from "../src/infra/redis.ts";
import type { Config } from "../src/shared/config.ts";
import { openDb, type DbHandle } from "../src/shared/db/index.ts";
import { redisKeys } from "../src/shared/keys.ts";
import { roomConv } from "../src/shared/protocol.ts";
import { noLateWrites } from "../src/shared/redis.ts";
import { silentLogger } from "../src/shared/log.ts";
import type { Result } from "../src/shared/batcher.ts";
import type { Accounts } from "../src/logic/accounts.ts";
import { IN_DOUBT_MESSAGE, Messages } from "../src/logic/messages.ts";
import { defineScripts } from "../src/logic/scripts.ts";
import { Snowflake } from "../src/logic/snowflake.ts";
import type { SendAck, SendReq } from "../proto/logic.ts";
import { eventually } from "./support/http.ts";
import { freePort, getInfra } from "./support/infra.ts";

const BUDGET_MS = 1000;
const STOPS = 12;

let dir: string;
let redis: Service;
let port: number;
let dbh: DbHandle;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "bunchat-sigstop-"));
  port = await freePort();
  redis = createService(redisSpec({ port, dir, appendfsync: "always" }), { log: silentLogger, logFile: join(dir, "redis.log") });
  await redis.start();
  dbh = openDb((await getInfra()).mysqlUrl, 2);
}, 60_000);
afterAll(async () => {
  await redis?.stop();
  await dbh?.close();
  rmSync(dir, { recursive: true, force: true });
});

test("Redis SIGSTOPped again and again under sends: no send answered 'not stored' is stored; every in-doubt send that was stored is counted", async () => {
  const client = defineScripts(new Redis(port, "127.0.0.1", { enableAutoPipelining: true, ...noLateWrites(BUDGET_MS) }));
  await new Promise((res) => client.once("ready", res));
  const direct = new Redis(port, "127.0.0.1");
  const prefix = `stop${process.pid}:`;
  const keys = redisKeys(prefix);
  const config = { redisPrefix: prefix, streamPartitions: 4, rateLimitPerSec: 100_000, rateLimitBurst: 100_000, sendTimeoutMs: 5000, ackMode: "fsync" } as Config;
  const accounts = { names: async (ids: number[]) => new Map(ids.map((id) => [id, `user${id}`])) } as unknown as Accounts;
  const messages = new Messages({ db: dbh.db, redis: client, keys, config, accounts, ids: () => new Snowflake(11) });
  messages.log = { warn: () => undefined };
  const room = "stops";
  const outcomes: { body: string; r: Result<SendAck>; ms: number }[] = [];
  let running = true;
  let n = 0;
  // Four senders, each one batch of 8 in flight at a time, as api's batcher does.
  const senders = Array.from({ length: 4 }, async (_, s) => {
    while (running) {
      const batch: SendReq[] = Array.from({ length: 8 }, () => {
        const body = `s${s}n${++n}`;
        return { from: { userId: 1, userName: "user1" }, room, body, retryKey: body };
      });
      const t0 = Date.now();
      const res = await messages.send(batch, t0 + BUDGET_MS);
      res.forEach((r, i) => outcomes.push({ body: batch[i].body, r, ms: Date.now() - t0 }));
      if (res.some((r) => r.err)) await Bun.sleep(20);
    }
  });
  const pid = redis.pid!;
  for (let i = 0; i < STOPS; i++) {
    await Bun.sleep(150 + Math.floor(Math.random() * 250));
    process.kill(pid, "SIGSTOP");
    await Bun.sleep(BUDGET_MS + 300);
    process.kill(pid, "SIGCONT");
  }
  await Bun.sleep(500);
  running = false;
  await Promise.all(senders);

  const stored = new Set<string>();
  for (const e of await direct.xrangeBuffer(keys.stream(0), "-", "+").then(async (a) => [
    ...a,
    ...(await direct.xrangeBuffer(keys.stream(1), "-", "+")),
    ...(await direct.xrangeBuffer(keys.stream(2), "-", "+")),
    ...(await direct.xrangeBuffer(keys.stream(3), "-", "+")),
  ])) {
    const { parseEvent } = await import("../src/shared/stream.ts");
    const d = e[1][e[1].findIndex((f) => f.toString() === "d") + 1];
    const ev = parseEvent(d);
    if (ev.t === "m" && ev.conv === roomConv(room)) stored.add(ev.body);
  }
  const acked = outcomes.filter((o) => o.r.ok);
  const sure = outcomes.filter((o) => o.r.err && o.r.err.message !== IN_DOUBT_MESSAGE);
  const doubt = outcomes.filter((o) => o.r.err?.message === IN_DOUBT_MESSAGE);
  const doubtStored = doubt.filter((o) => stored.has(o.body));
  for (const o of acked) expect(stored.has(o.body)).toBe(true);
  for (const o of sure) expect({ body: o.body, stored: stored.has(o.body) }).toEqual({ body: o.body, stored: false });
  expect(stored.size).toBe(acked.length + doubtStored.length);
  expect(Math.max(...outcomes.map((o) => o.ms))).toBeLessThan(BUDGET_MS + 1000);
  await eventually(() => messages.inDoubtStored >= doubtStored.length, 60_000, "the audit counts every in-doubt send that was stored");
  expect(messages.inDoubtStored).toBe(doubtStored.length);
  console.log(JSON.stringify({ stops: STOPS, sends: outcomes.length, acked: acked.length, notStored: sure.length, inDoubt: doubt.length, inDoubtStored: doubtStored.length }));
  client.disconnect();
  direct.disconnect();
}, 120_000);
