// The one way a send answered UNAVAILABLE can end up stored (README "A send whose outcome is
// unknown"), reproduced deterministically: Redis runs the send script before its deadline, but its
// reply is held past the deadline (as when Redis is SIGSTOPped between running a script and
// writing its reply, e.g. during the fsync that `appendfsync always` does before every reply).
// A real redis-server behind a TCP proxy that can hold either direction of the bytes.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { Redis } from "ioredis";
import type { Socket } from "bun";
import type { Config } from "../src/shared/config.ts";
import { openDb, type DbHandle } from "../src/shared/db/index.ts";
import { redisKeys } from "../src/shared/keys.ts";
import { roomConv } from "../src/shared/protocol.ts";
import { noLateWrites } from "../src/shared/redis.ts";
import type { Accounts } from "../src/logic/accounts.ts";
import { IN_DOUBT_MESSAGE, Messages } from "../src/logic/messages.ts";
import { defineScripts, type Scripts } from "../src/logic/scripts.ts";
import { Snowflake } from "../src/logic/snowflake.ts";
import type { SendReq } from "../proto/logic.ts";
import { getInfra } from "./support/infra.ts";
import { eventually } from "./support/http.ts";

/** A TCP proxy to Redis; hold.up keeps client→Redis bytes back, hold.down Redis→client bytes. */
class HoldingProxy {
  readonly hold = { up: false, down: false };
  private held: { up: Buffer[]; down: Buffer[] } = { up: [], down: [] };
  private pairs: { client: Socket<unknown>; server?: Socket<unknown>; early: Buffer[] }[] = [];
  private listener: { port: number; stop(closeActive?: boolean): void };
  constructor(redisPort: number) {
    const proxy = this;
    this.listener = Bun.listen<{ pair: (typeof proxy.pairs)[number] }>({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        open(client) {
          const pair: (typeof proxy.pairs)[number] = { client: client as Socket<unknown>, early: [] };
          client.data = { pair };
          proxy.pairs.push(pair);
          void Bun.connect({
            hostname: "127.0.0.1",
            port: redisPort,
            socket: {
              open(server) {
                pair.server = server as Socket<unknown>;
                for (const b of pair.early.splice(0)) server.write(b);
              },
              data(_s, d) {
                if (proxy.hold.down) proxy.held.down.push(Buffer.from(d));
                else pair.client.write(d);
              },
              close() {
                pair.client.end();
              },
            },
          });
        },
        data(client, d) {
          const pair = client.data.pair;
          if (proxy.hold.up) proxy.held.up.push(Buffer.from(d));
          else if (pair.server) pair.server.write(d);
          else pair.early.push(Buffer.from(d));
        },
        close(client) {
          client.data.pair.server?.end();
        },
      },
    });
  }
  get port(): number {
    return this.listener.port;
  }
  /** Lets held bytes through, in order (one client connection is assumed). */
  release(): void {
    this.hold.up = this.hold.down = false;
    const p = this.pairs[this.pairs.length - 1];
    for (const b of this.held.up.splice(0)) p.server?.write(b);
    for (const b of this.held.down.splice(0)) p.client.write(b);
  }
  stop(): void {
    this.listener.stop(true);
    for (const p of this.pairs) p.server?.end();
  }
}

let redis: Redis;
let dbh: DbHandle;
let proxy: HoldingProxy;
let viaProxy: Redis & Scripts;
beforeAll(async () => {
  const infra = await getInfra();
  redis = new Redis(infra.redisUrl);
  dbh = openDb(infra.mysqlUrl, 2);
  proxy = new HoldingProxy(Number(new URL(infra.redisUrl).port));
  // As logic's own client: no offline queue, no re-send, commands time out (src/logic/server.ts).
  viaProxy = defineScripts(new Redis(proxy.port, "127.0.0.1", { enableAutoPipelining: true, ...noLateWrites(1500) }));
  await new Promise((res) => viaProxy.once("ready", res));
});
afterAll(async () => {
  viaProxy?.disconnect();
  redis?.disconnect();
  proxy?.stop();
  await dbh?.close();
});

function scope() {
  const prefix = `indoubt${process.pid}x${Date.now().toString(36)}:`;
  const keys = redisKeys(prefix);
  const config = { redisPrefix: prefix, streamPartitions: 4, rateLimitPerSec: 1000, rateLimitBurst: 1000, sendTimeoutMs: 5000, ackMode: "memory" } as Config;
  const accounts = { names: async (ids: number[]) => new Map(ids.map((id) => [id, `user${id}`])) } as unknown as Accounts;
  const messages = new Messages({ db: dbh.db, redis: viaProxy, keys, config, accounts, ids: () => new Snowflake(9) });
  const warnings: string[] = [];
  messages.log = { warn: (m) => warnings.push(m) };
  return { keys, messages, warnings };
}
const send = (room: string, body: string, retryKey: string): SendReq => ({ from: { userId: 1, userName: "user1" }, room, body, retryKey });

test("Redis runs a send but its reply is held past the deadline: UNAVAILABLE says the outcome is unknown, and the send found stored afterwards is counted and logged", async () => {
  const { keys, messages, warnings } = scope();
  const room = "held";
  expect((await messages.send([send(room, "before", "k0")]))[0].ok?.seq).toBe(1);

  proxy.hold.down = true; // Redis gets the call at once and runs it; its reply stays back
  const t0 = Date.now();
  const [res] = await messages.send([send(room, "ran, reply held", "k1")], Date.now() + 1500);
  expect(Date.now() - t0).toBeLessThan(3000);
  expect(res.err).toEqual({ code: "UNAVAILABLE", message: IN_DOUBT_MESSAGE });
  expect(messages.inDoubt).toBe(1);
  // The path itself: answered UNAVAILABLE, yet Redis stored it (read directly, not via the proxy).
  expect(await redis.hget(keys.conv(roomConv(room)), "seq")).toBe("2");
  expect(messages.inDoubtStored).toBe(0);

  proxy.release();
  await eventually(() => messages.inDoubtStored === 1, 10_000, "the audit finds it stored");
  expect(warnings.some((w) => w.includes("were stored"))).toBe(true);
}, 30_000);

test("a send held before Redis gets it is refused by the script (LATE) when it arrives late: in doubt when answered, found not stored afterwards", async () => {
  const { keys, messages } = scope();
  const room = "late";
  expect((await messages.send([send(room, "before", "k0")]))[0].ok?.seq).toBe(1);

  proxy.hold.up = true; // the call waits in a buffer, as in the socket of a hung Redis
  const [res] = await messages.send([send(room, "never ran in time", "k1")], Date.now() + 1500);
  expect(res.err?.code).toBe("UNAVAILABLE");
  await Bun.sleep(200); // well past the script's deadline (answerBy - 500 ms)
  proxy.release();
  // Wait until the audit has looked (Redis answers again through the proxy), then check.
  await eventually(async () => (await viaProxy.ping().catch(() => "")) === "PONG", 10_000, "redis answers via the proxy");
  await Bun.sleep(500);
  expect(await redis.hget(keys.conv(roomConv(room)), "seq")).toBe("1");
  expect(messages.inDoubtStored).toBe(0);
}, 30_000);
