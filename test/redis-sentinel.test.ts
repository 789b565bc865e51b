// Redis high availability with Sentinel, on real processes: a redis-server primary and replica and
// three redis-sentinel processes on free ports; logic's send path (Messages, as the logic role
// builds it) on IM_REDIS_URL=redis-sentinel://…/mymaster. Under steady sends the replica falls
// behind (stopped and cut off from the primary for a moment, as a lagging replica is), then the
// primary is SIGKILLed and Sentinel promotes the replica. Every acknowledged message must be on
// the new primary in the replica-acknowledged mode (IM_ACK_MODE=replica: WAIT); the other modes'
// losses are measured and printed.
import { afterAll, beforeAll, expect, test } from "bun:test";
import Redis from "ioredis";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Child } from "../src/infra/child.ts";
import { findBinary } from "../src/infra/binaries.ts";
import { redisPing } from "../src/infra/redis.ts";
import { openDb, type DbHandle } from "../src/shared/db/index.ts";
import type { Config } from "../src/shared/config.ts";
import { redisKeys } from "../src/shared/keys.ts";
import { createRedis, noLateWrites } from "../src/shared/redis.ts";
import type { Accounts } from "../src/logic/accounts.ts";
import { Messages } from "../src/logic/messages.ts";
import { defineScripts } from "../src/logic/scripts.ts";
import { Snowflake } from "../src/logic/snowflake.ts";
import type { SendAck, SendReq } from "../proto/logic.ts";
import type { Result } from "../src/shared/batcher.ts";
import { freePort, getInfra } from "./support/infra.ts";
import { eventually } from "./support/http.ts";

let dbh: DbHandle;
const dirs: string[] = [];
const children: Child[] = [];
beforeAll(async () => {
  dbh = openDb((await getInfra()).mysqlUrl, 2);
});
afterAll(async () => {
  await Promise.all(children.map((c) => c.stop(2000)));
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  await dbh?.close();
});

interface Topology {
  primary: number;
  replica: number;
  sentinels: number[];
  primaryProc: Child;
  replicaProc: Child;
  url: string;
}

/** appendfsync "always" on both servers for the fsync ack mode; no AOF otherwise. */
async function startTopology(fsync = false): Promise<Topology> {
  const dir = mkdtempSync(join(tmpdir(), "bunchat-sentinel-"));
  dirs.push(dir);
  const server = findBinary(["redis-server"], "redis-server");
  const sentinelBin = findBinary(["redis-sentinel"], "redis-sentinel");
  const [primary, replica, ...sentinels] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort()]);
  const redis = (port: number, extra: string[] = []) => {
    const aof = fsync ? ["--appendonly", "yes", "--appendfsync", "always", "--appenddirname", `aof-${port}`] : ["--appendonly", "no"];
    const c = new Child({ cmd: [server, "--port", String(port), "--bind", "127.0.0.1", "--dir", dir, "--save", "", ...aof, "--dbfilename", `${port}.rdb`, ...extra] });
    children.push(c);
    return c;
  };
  const primaryProc = redis(primary);
  const replicaProc = redis(replica, ["--replicaof", "127.0.0.1", String(primary)]);
  await eventually(async () => (await redisPing(primary)) && (await redisPing(replica)), 10_000, "redis up");
  const r = new Redis(replica);
  await eventually(async () => (await r.info("replication")).includes("master_link_status:up"), 10_000, "replica linked");
  r.disconnect();
  for (const port of sentinels) {
    const conf = join(dir, `sentinel-${port}.conf`);
    writeFileSync(
      conf,
      [
        `port ${port}`,
        "bind 127.0.0.1",
        `dir ${dir}`,
        `sentinel monitor mymaster 127.0.0.1 ${primary} 2`,
        "sentinel down-after-milliseconds mymaster 1500",
        "sentinel failover-timeout mymaster 10000",
        "sentinel parallel-syncs mymaster 1",
        "",
      ].join("\n"),
    );
    children.push(new Child({ cmd: [sentinelBin, conf] }));
  }
  for (const port of sentinels) {
    await eventually(async () => {
      const s = new Redis(port, { lazyConnect: true, maxRetriesPerRequest: 0 });
      try {
        await s.connect();
        const reps = (await s.call("SENTINEL", "REPLICAS", "mymaster")) as unknown[];
        const others = (await s.call("SENTINEL", "SENTINELS", "mymaster")) as unknown[];
        return reps.length === 1 && others.length === 2;
      } finally {
        s.disconnect();
      }
    }, 20_000, "sentinels see the replica and each other");
  }
  return { primary, replica, sentinels, primaryProc, replicaProc, url: `redis-sentinel://${sentinels.map((p) => `127.0.0.1:${p}`).join(",")}/mymaster` };
}

const user = { userId: 1, userName: "user1" };

/** Runs one ack mode through a failover; returns what was acknowledged and what survived. */
async function failover(ackMode: Config["ackMode"]) {
  const t = await startTopology(ackMode === "fsync");
  const prefix = `sent${process.pid}${ackMode}:`;
  const keys = redisKeys(prefix);
  const config = { redisPrefix: prefix, streamPartitions: 2, rateLimitPerSec: 100_000, rateLimitBurst: 100_000, sendTimeoutMs: 3000, ackMode } as Config;
  const redis = defineScripts(createRedis(t.url, { enableAutoPipelining: true, ...noLateWrites(config.sendTimeoutMs) }));
  redis.on("error", () => undefined);
  const accounts = { names: async (ids: number[]) => new Map(ids.map((id) => [id, `user${id}`])) } as unknown as Accounts;
  const messages = new Messages({ db: dbh.db, redis, keys, config, accounts, ids: () => ids });
  const ids = new Snowflake(100 + ["memory", "fsync", "replica"].indexOf(ackMode));
  const room = `ha${Date.now().toString(36)}`;
  const acked = new Map<string, number>();
  let refused = 0;
  let ackedWhileBehind = 0;
  let n = 0;
  let running = true;
  const lanes = Array.from({ length: 3 }, async (_, lane) => {
    while (running) {
      const batch: SendReq[] = Array.from({ length: 5 }, () => ({ from: user, room, body: `b${++n}`, retryKey: `k${lane}:${n}` }));
      const res: Result<SendAck>[] = await messages.send(batch).catch(() => batch.map(() => ({ err: { code: "UNAVAILABLE" as const, message: "" } })));
      res.forEach((r) => (r.ok ? acked.set(r.ok.id, r.ok.seq) : refused++));
      await Bun.sleep(10);
    }
  });
  try {
    await eventually(() => acked.size >= 100, 20_000, "sends accepted");
    // The replica falls behind: stopped, and cut off by the primary, while sends go on.
    process.kill(t.replicaProc.pid, "SIGSTOP");
    const p = new Redis(t.primary, { maxRetriesPerRequest: 0 });
    p.on("error", () => undefined);
    await p.call("CLIENT", "KILL", "TYPE", "replica");
    p.disconnect();
    const ackedBefore = acked.size;
    await Bun.sleep(800);
    process.kill(t.primaryProc.pid, "SIGKILL");
    process.kill(t.replicaProc.pid, "SIGCONT");
    ackedWhileBehind = acked.size - ackedBefore;
    // Sentinel promotes the replica.
    const s = new Redis(t.sentinels[0]);
    s.on("error", () => undefined);
    await eventually(async () => Number(((await s.call("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster")) as string[])[1]) === t.replica, 30_000, "failover");
    s.disconnect();
    await Bun.sleep(1500);
  } finally {
    running = false;
    await Promise.all(lanes);
  }
  // What the new primary holds: the pending zset has every accepted message (no task drains it).
  const np = new Redis(t.replica);
  np.on("error", () => undefined);
  const held = new Set<string>();
  for (const v of await np.zrange(keys.pending(`room:${room}`), "0", "-1")) held.add(JSON.parse(v).id);
  np.disconnect();
  redis.disconnect();
  const lost = [...acked.keys()].filter((id) => !held.has(id));
  return { ackMode, acked: acked.size, ackedWhileReplicaBehind: ackedWhileBehind, refused, lost: lost.length };
}

test("Sentinel failover under sends: 0 acknowledged messages lost with IM_ACK_MODE=replica; the other modes measured", async () => {
  const results = [];
  for (const mode of ["replica", "memory", "fsync"] as const) results.push(await failover(mode));
  console.log(JSON.stringify({ sentinelFailover: results }));
  const replica = results.find((x) => x.ackMode === "replica")!;
  expect(replica.acked).toBeGreaterThan(50);
  expect(replica.lost).toBe(0);
  // The lagging replica does lose what memory mode acknowledged meanwhile: the test shows a difference.
  expect(results.find((x) => x.ackMode === "memory")!.lost).toBeGreaterThan(0);
}, 150_000);
