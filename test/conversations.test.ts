// Logic's conversation list (GET /api/conversations) against a real Redis and MariaDB, without
// gRPC: MySQL's user_conversations is read once per Redis server process (or when Redis lost the
// set, or got back an older copy), not on every call, and each conversation hash is read once.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { drizzle } from "drizzle-orm/mysql2";
import { Redis } from "ioredis";
import { openDb, type Db, type DbHandle } from "../src/shared/db/index.ts";
import * as schema from "../src/shared/db/schema.ts";
import { ownSeqField, redisKeys } from "../src/shared/keys.ts";
import { silentLogger } from "../src/shared/log.ts";
import { dmConv } from "../src/shared/protocol.ts";
import { Conversations } from "../src/logic/conversations.ts";
import { ReadPositions } from "../src/logic/read.ts";
import { defineScripts } from "../src/logic/scripts.ts";
import { defineReadScripts } from "../src/logic/scripts-read.ts";
import { SeqFence } from "../src/logic/seq-fence.ts";
import { getInfra } from "./support/infra.ts";

let handle: DbHandle;
let db: Db;
/** Every SQL statement this test's Db ran. */
const queries: string[] = [];

beforeAll(async () => {
  const infra = await getInfra();
  handle = openDb(infra.mysqlUrl);
  db = drizzle(handle.pool, { schema, mode: "default", logger: { logQuery: (q) => void queries.push(q) } });
});
afterAll(() => handle?.close());

test("MySQL's list is merged once per Redis server process, or after Redis lost the set; each conv hash is read once per call", async () => {
  const infra = await getInfra();
  const keys = redisKeys(`cv${process.pid}x${Math.random().toString(36).slice(2, 8)}:`);
  const redis = defineReadScripts(defineScripts(new Redis(infra.redisUrl)));
  // What this client sends, from MONITOR (the one sure view of pipelined commands).
  const myAddr = /addr=(\S+)/.exec(String(await redis.client("INFO")))?.[1];
  const sent: string[][] = [];
  const monitored = new Redis(infra.redisUrl);
  const monitor = await monitored.monitor();
  monitor.on("monitor", (_t: string, args: string[], source: string) => source === myAddr && sent.push(args));
  const fence = new SeqFence({ db, redis, keys });
  const reads = new ReadPositions({ db, redis, keys, streamPartitions: 2, log: silentLogger });
  const convs = new Conversations({ db, redis, keys, fence, reads, names: async (ids) => new Map(ids.map((i) => [i, `u${i}`])), log: silentLogger });
  const u = 1_000_000 + Math.floor(Math.random() * 1e9);
  const dm = dmConv(u, u + 1);
  try {
    await redis.sadd(keys.userConvs(u), "room:a", dm);
    await redis.hset(keys.conv("room:a"), "seq", 5, "ts", 1000);
    await redis.hset(keys.conv(dm), "seq", 2, "ts", 2000, ownSeqField(u), 2);
    // MySQL knows one conversation Redis does not (written behind before Redis lost it).
    await db.insert(schema.userConversations).values([
      { userId: u, conv: dm },
      { userId: u, conv: "room:a" },
      { userId: u, conv: "room:old" },
    ]);
    const expected = [
      { conv: dm, lastSeq: 2, lastTs: 2000, readSeq: 2, unread: 0, peer: { userId: u + 1, userName: `u${u + 1}` } },
      { conv: "room:a", lastSeq: 5, lastTs: 1000, readSeq: 0, unread: 5 },
      { conv: "room:old", lastSeq: 0, lastTs: null, readSeq: 0, unread: 0 },
    ];
    const listQueries = () => queries.filter((q) => q.includes("`user_conversations`") && q.startsWith("select")).length;

    expect(await convs.list(u)).toEqual(expected);
    expect(listQueries()).toBe(1);
    expect((await redis.smembers(keys.userConvs(u))).sort()).toEqual([dm, "room:a", "room:old"].sort());

    // Steady state: no MySQL at all, and one HMGET per conversation hash (no second read).
    const before = queries.length;
    await redis.ping("mark");
    expect(await convs.list(u)).toEqual(expected);
    expect(queries.length).toBe(before);
    await redis.ping("end");
    await Bun.sleep(100); // MONITOR lines arrive on another connection
    const call = sent.slice(sent.findIndex((a) => a[1] === "mark"), sent.findIndex((a) => a[1] === "end"));
    const convReads = call.filter((a) => a[1]?.startsWith(keys.conv("")));
    expect(convReads.map((a) => a[0].toLowerCase()).sort()).toEqual(["hmget", "hmget", "hmget"]);

    // Redis back from an older copy (another server process, the set without room:old): merged again.
    await redis.srem(keys.userConvs(u), "room:old");
    await redis.set(keys.userConvsChecked(u), "an-older-run");
    expect(await convs.list(u)).toEqual(expected);
    expect(listQueries()).toBe(2);
    // Redis lost the set altogether: the list comes back from MySQL.
    await redis.del(keys.userConvs(u), keys.userConvsChecked(u));
    expect((await convs.list(u)).map((c) => c.conv)).toEqual(expected.map((c) => c.conv));
    expect(listQueries()).toBe(3);
  } finally {
    monitor.disconnect();
    monitored.disconnect();
    redis.disconnect();
  }
});
