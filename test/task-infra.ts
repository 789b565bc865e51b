// Real redis-server, etcd and mariadbd for the task tests, started once per test process on free
// ports in a temp folder and stopped on exit. Stand-in until test/support/infra.ts is shared.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer } from "node:net";
import type { Subprocess } from "bun";
import mysql from "mysql2/promise";
import Redis from "ioredis";
import { Etcd3 } from "etcd3";

export interface TaskInfra {
  redisUrl: string;
  mysqlUrl: string;
  etcdEndpoints: string[];
  mysql: { stop(): Promise<void>; start(): Promise<void> };
}

async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
  });
}

/** Polls until fn() resolves truthy (errors count as not yet), or throws after timeoutMs. */
export async function waitFor<T>(fn: () => T | Promise<T>, timeoutMs = 10_000, what = "condition"): Promise<NonNullable<T>> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ""}`);
    await Bun.sleep(25);
  }
}

const procs = new Set<Subprocess>();
let dir = "";

function spawn(cmd: string[]): Subprocess {
  const p = Bun.spawn(cmd, { stdout: "ignore", stderr: "pipe" });
  procs.add(p);
  return p;
}

async function stopProc(p: Subprocess): Promise<void> {
  procs.delete(p);
  p.kill("SIGTERM");
  const t = setTimeout(() => p.kill("SIGKILL"), 10_000);
  await p.exited;
  clearTimeout(t);
}

async function startRedis(): Promise<string> {
  const port = await freePort();
  spawn(["redis-server", "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir]);
  const url = `redis://127.0.0.1:${port}`;
  await waitFor(async () => {
    const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    r.on("error", () => undefined);
    try {
      await r.connect();
      return (await r.ping()) === "PONG";
    } finally {
      r.disconnect();
    }
  }, 15_000, "redis-server");
  return url;
}

async function startEtcd(): Promise<string[]> {
  const client = await freePort();
  const peer = await freePort();
  const c = `http://127.0.0.1:${client}`;
  const p = `http://127.0.0.1:${peer}`;
  spawn([
    "etcd", "--name", "t", "--data-dir", join(dir, "etcd"), "--logger=zap", "--log-level=error",
    "--listen-client-urls", c, "--advertise-client-urls", c,
    "--listen-peer-urls", p, "--initial-advertise-peer-urls", p, "--initial-cluster", `t=${p}`,
  ]);
  await waitFor(async () => {
    const e = new Etcd3({ hosts: [c], dialTimeout: 500 });
    try {
      await e.put("/ping").value("1").exec();
      return true;
    } finally {
      e.close();
    }
  }, 15_000, "etcd");
  return [c];
}

async function startMysql(): Promise<{ url: string; stop(): Promise<void>; start(): Promise<void> }> {
  const port = await freePort();
  const datadir = join(dir, "db");
  const install = Bun.spawn(
    ["mariadb-install-db", "--no-defaults", `--datadir=${datadir}`, "--user=root", "--auth-root-authentication-method=normal", "--skip-test-db"],
    { stdout: "ignore", stderr: "pipe" },
  );
  if ((await install.exited) !== 0) throw new Error(`mariadb-install-db failed: ${await new Response(install.stderr).text()}`);
  let proc: Subprocess | undefined;
  const url = `mysql://root@127.0.0.1:${port}/bunchat`;
  const start = async () => {
    proc = spawn([
      "/usr/sbin/mariadbd", "--no-defaults", "--user=root", `--datadir=${datadir}`, `--port=${port}`, "--bind-address=127.0.0.1",
      `--socket=${join(dir, "my.sock")}`, `--pid-file=${join(dir, "my.pid")}`, "--skip-name-resolve", "--innodb-buffer-pool-size=32M",
      "--innodb-log-file-size=16M", "--skip-log-bin",
    ]);
    await waitFor(async () => {
      const c = await mysql.createConnection({ host: "127.0.0.1", port, user: "root", connectTimeout: 500 });
      await c.end();
      return true;
    }, 30_000, "mariadbd");
  };
  await start();
  return {
    url,
    start,
    stop: async () => {
      if (proc) await stopProc(proc);
      proc = undefined;
    },
  };
}

let infra: Promise<TaskInfra> | undefined;

export function getTaskInfra(): Promise<TaskInfra> {
  infra ??= (async () => {
    dir = await mkdtemp(join(tmpdir(), "bunchat-task-"));
    const [redisUrl, etcdEndpoints, db] = await Promise.all([startRedis(), startEtcd(), startMysql()]);
    return { redisUrl, etcdEndpoints, mysqlUrl: db.url, mysql: { stop: db.stop, start: db.start } };
  })();
  return infra;
}

/** Stops every process this module started and removes the temp folder. */
export async function stopTaskInfra(): Promise<void> {
  await Promise.all([...procs].map(stopProc));
  if (dir) await rm(dir, { recursive: true, force: true });
  infra = undefined;
}

process.on("exit", () => {
  for (const p of procs) p.kill("SIGKILL");
});
