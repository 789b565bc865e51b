import { describe, expect, test } from "bun:test";
import { loadConfig } from "./config.ts";
import { noLateWrites, redisTarget } from "./redis.ts";

describe("redisTarget", () => {
  test("a redis:// URL is left to ioredis", () => {
    expect(redisTarget("redis://127.0.0.1:6379/2")).toEqual({ url: "redis://127.0.0.1:6379/2", options: {} });
  });

  test("a sentinel URL lists the sentinels and names the master", () => {
    expect(redisTarget("redis-sentinel://10.0.0.1:26379,10.0.0.2:26380,sentinel-3/mymaster").options).toEqual({
      sentinels: [
        { host: "10.0.0.1", port: 26379 },
        { host: "10.0.0.2", port: 26380 },
        { host: "sentinel-3", port: 26379 },
      ],
      name: "mymaster",
      db: 0,
    });
    expect(redisTarget("redis-sentinel://:s%40cret@h:1/m?db=3").options).toMatchObject({ sentinels: [{ host: "h", port: 1 }], name: "m", db: 3, password: "s@cret" });
  });

  test("a sentinel URL without hosts, master name or with a bad port is refused", () => {
    for (const bad of ["redis-sentinel:///mymaster", "redis-sentinel://h:1", "redis-sentinel://h:1/", "redis-sentinel://h:99999/m", "redis-sentinel://h:x/m"]) {
      expect(() => redisTarget(bad)).toThrow(/invalid IM_REDIS_URL/);
    }
  });

  test("send-path clients never queue or re-send a command", () => {
    expect(noLateWrites(5000)).toEqual({ enableOfflineQueue: false, autoResendUnfulfilledCommands: false, maxRetriesPerRequest: 0, commandTimeout: 5000 });
  });
});

describe("config", () => {
  test("IM_SEND_TIMEOUT_MS and IM_ACK_MODE: defaults and checks", () => {
    expect(loadConfig({}).config).toMatchObject({ sendTimeoutMs: 5000, ackMode: "memory" });
    expect(loadConfig({ IM_ACK_MODE: "replica", IM_SEND_TIMEOUT_MS: "2000" }).config).toMatchObject({ sendTimeoutMs: 2000, ackMode: "replica" });
    expect(() => loadConfig({ IM_ACK_MODE: "disk" })).toThrow(/IM_ACK_MODE=disk must be memory, fsync or replica/);
    expect(() => loadConfig({ IM_SEND_TIMEOUT_MS: "10" })).toThrow(/IM_SEND_TIMEOUT_MS/);
  });
});
