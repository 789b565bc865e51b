// Integration test of the local infrastructure runner: real redis-server, mariadbd and etcd.
// It starts its own instance (not the shared one from getInfra), because it stops it.
import { afterAll, describe, expect, test } from "bun:test";
import { Etcd3 } from "etcd3";
import { Redis } from "ioredis";
import mysql from "mysql2/promise";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, startInfra, type Infra } from "../src/infra/index.ts";
import { createLogger, silentLogger } from "../src/shared/log.ts";
import { getInfra } from "./support/infra.ts";

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false; // ESRCH: no such process
  }
}

async function query<T>(url: string, sql: string, args: unknown[] = []): Promise<T[]> {
  const conn = await mysql.createConnection({ uri: url });
  try {
    const [rows] = await conn.query(sql, args);
    return rows as T[];
  } finally {
    await conn.end();
  }
}

describe("startInfra", () => {
  const dataDir = mkdtempSync(join(tmpdir(), "bunchat-infra-test-"));
  let infra: Infra | undefined;
  const pids: number[] = [];

  afterAll(async () => {
    await infra?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test("starts redis, mysql with the schema, and etcd", async () => {
    infra = await startInfra({ dataDir, log: silentLogger, keepData: false });
    for (const s of [infra.redis, infra.mysql, infra.etcd]) {
      expect(s.pid).toBeNumber();
      pids.push(s.pid!);
    }
    expect(infra.mysqlUrl).toMatch(/^mysql:\/\/root@127\.0\.0\.1:\d+\/bunchat$/);

    const redis = new Redis(infra.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
    await redis.connect();
    await redis.set("infra-test", "v");
    expect(await redis.get("infra-test")).toBe("v");
    redis.disconnect();

    const tables = await query<{ t: string }>(
      infra.mysqlUrl,
      "SELECT table_name AS t FROM information_schema.tables WHERE table_schema = 'bunchat'",
    );
    const names = tables.map((r) => r.t);
    expect(names).toContain("users");
    expect(names).toContain("messages");

    const etcd = new Etcd3({ hosts: infra.etcdEndpoints });
    await etcd.put("/infra-test").value("v");
    expect(await etcd.get("/infra-test").string()).toBe("v");
    etcd.close();
  });

  test("mysql.stop() then start() keeps port and data", async () => {
    const inf = infra!;
    await query(inf.mysqlUrl, "INSERT INTO users (name, name_lower, password_hash, created_at) VALUES ('infra_t', 'infra_t', 'x', 1)");
    const oldPid = inf.mysql.pid!;
    await inf.mysql.stop();
    expect(inf.mysql.pid).toBeUndefined();
    expect(isAlive(oldPid)).toBe(false);
    await expect(query(inf.mysqlUrl, "SELECT 1")).rejects.toThrow();

    await inf.mysql.start();
    expect(inf.mysql.pid).toBeNumber();
    expect(inf.mysql.pid).not.toBe(oldPid);
    pids.push(inf.mysql.pid!);
    const rows = await query<{ name: string }>(inf.mysqlUrl, "SELECT name FROM users WHERE name_lower = 'infra_t'");
    expect(rows.map((r) => r.name)).toEqual(["infra_t"]);
  });

  test("redis keeps its data across a restart (append-only file)", async () => {
    const inf = infra!;
    await inf.redis.stop();
    await inf.redis.start();
    pids.push(inf.redis.pid!);
    const redis = new Redis(inf.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
    await redis.connect();
    expect(await redis.get("infra-test")).toBe("v");
    redis.disconnect();
  });

  test("stop() leaves no child process alive and deletes the data folder", async () => {
    await infra!.stop();
    for (const pid of pids) expect(isAlive(pid)).toBe(false);
    expect(infra!.redis.pid).toBeUndefined();
    expect(existsSync(dataDir)).toBe(false);
  });

  test("a port in use fails with a clear error and stops what it had started", async () => {
    const busy = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const dir = mkdtempSync(join(tmpdir(), "bunchat-infra-busy-"));
    const lines: string[] = [];
    const log = createLogger({ write: (l) => lines.push(l) });
    try {
      const ports = { redis: busy.port, mysql: await freePort(), etcd: await freePort(), etcdPeer: await freePort() };
      await expect(startInfra({ dataDir: dir, ports, log })).rejects.toThrow(`port ${busy.port}`);
    } finally {
      busy.stop(true);
      rmSync(dir, { recursive: true, force: true });
    }
    const started = lines.map((l) => JSON.parse(l)).filter((r) => r.msg === "service started");
    expect(started.length).toBeGreaterThan(0); // mysql and etcd did start
    for (const r of started) expect(isAlive(r.pid)).toBe(false);
  });
});

describe("getInfra", () => {
  test("is shared by every caller in the run", async () => {
    const [a, b] = await Promise.all([getInfra(), getInfra()]);
    expect(a).toBe(b);
    expect(a.redis.pid).toBeNumber();
  });
});
