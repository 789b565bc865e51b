// Logic's read positions against a real Redis and MariaDB, without gRPC: the write-behind's
// claims survive a crashed flusher, a change made during a flush is written by the next one,
// MySQL never moves back, and a hash Redis lost is rebuilt from MySQL.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { and, eq } from "drizzle-orm";
import { Redis } from "ioredis";
import { openDb, type DbHandle } from "../src/shared/db/index.ts";
import { readPositions } from "../src/shared/db/schema.ts";
import { ownSeqField, redisKeys } from "../src/shared/keys.ts";
import { silentLogger } from "../src/shared/log.ts";
import { ReadPositions } from "../src/logic/read.ts";
import { defineReadScripts } from "../src/logic/scripts-read.ts";
import { getInfra } from "./support/infra.ts";

let redis: Redis;
let db: DbHandle;
const uid = () => 1_000_000 + Math.floor(Math.random() * 1e9);

beforeAll(async () => {
  const infra = await getInfra();
  redis = new Redis(infra.redisUrl);
  db = openDb(infra.mysqlUrl);
});
afterAll(async () => {
  redis?.disconnect();
  await db?.close();
});

function positions(claimStaleMs?: number) {
  const keys = redisKeys(`rp${process.pid}x${Math.random().toString(36).slice(2, 8)}:`);
  // A separate client per instance, as two logic processes would have.
  const r = defineReadScripts(new Redis(redis.options));
  const reads = new ReadPositions({ db: db.db, redis: r, keys, streamPartitions: 2, log: silentLogger, claimStaleMs });
  return { keys, reads, r };
}

const row = async (userId: number, conv: string) =>
  (await db.db.select().from(readPositions).where(and(eq(readPositions.userId, userId), eq(readPositions.conv, conv))))[0]?.readSeq;

const user = (userId: number) => ({ userId, userName: `u${userId}` });

test("a claim left by a crashed flusher is taken over once stale; MySQL keeps the greatest value", async () => {
  const { keys, reads, r } = positions(300);
  const u = uid();
  await r.hset(keys.conv("room:a"), "seq", 9);
  expect(await reads.markRead({ user: user(u), conv: "room:a", seq: 4 })).toEqual({ conv: "room:a", readSeq: 4 });
  // A flusher claims the hash and dies before writing it.
  const crashed = await r.imReadClaim(keys.readDirty, keys.readClaims, String(Date.now()), "10", "300");
  expect(crashed).toEqual([keys.readSeqs(u)]);
  await reads.flush();
  expect(await row(u, "room:a")).toBeUndefined(); // not stale yet: nobody else writes it
  await Bun.sleep(400);
  await reads.flush();
  expect(await row(u, "room:a")).toBe(4);
  expect(await r.hlen(keys.readClaims)).toBe(0);
  // MySQL never moves back: a higher row stays.
  await db.db.update(readPositions).set({ readSeq: 8 }).where(and(eq(readPositions.userId, u), eq(readPositions.conv, "room:a")));
  await reads.markRead({ user: user(u), conv: "room:a", seq: 6 });
  await reads.flush();
  expect(await row(u, "room:a")).toBe(8);
  r.disconnect();
});

test("a change made while its hash is being written is written by the next flush; a lost hash is rebuilt from MySQL by max", async () => {
  const { keys, reads, r } = positions();
  const u = uid();
  await r.hset(keys.conv("room:b"), "seq", 100);
  await reads.markRead({ user: user(u), conv: "room:b", seq: 10 });
  const first = reads.flush();
  // Lands during or after the first flush's read of the hash: it is dirty again either way.
  await reads.markRead({ user: user(u), conv: "room:b", seq: 20 });
  await first;
  await reads.flush();
  expect(await row(u, "room:b")).toBe(20);
  expect(await r.scard(keys.readDirty)).toBe(0);

  // Redis loses the hash: rebuilt from MySQL. readSeq is also at least the user's own last send
  // (the send script's field in the conversation hash).
  await r.del(keys.readSeqs(u));
  await r.hset(keys.conv("room:c"), "seq", 5, ownSeqField(u), 3);
  expect(await reads.get(u, ["room:b", "room:c", "room:none"])).toEqual([20, 3, 0]);
  expect(await r.hget(keys.readSeqs(u), "_")).toBe("1");
  // markRead moves on from the rebuilt and own-send positions, and never below them.
  expect(await reads.markRead({ user: user(u), conv: "room:b", seq: 15 })).toEqual({ conv: "room:b", readSeq: 20 });
  expect(await reads.markRead({ user: user(u), conv: "room:c", seq: 2 })).toEqual({ conv: "room:c", readSeq: 3 });
  expect(await reads.markRead({ user: user(u), conv: "room:c", seq: 9 })).toEqual({ conv: "room:c", readSeq: 5 });
  r.disconnect();
});
