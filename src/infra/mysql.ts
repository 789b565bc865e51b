// MariaDB: a data folder initialised once with mariadb-install-db, then mariadbd on
// 127.0.0.1 where root logs in over TCP without a password (local development and tests only).
import mysql from "mysql2/promise";
import { existsSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Child } from "./child.ts";
import { findBinary, isRoot } from "./binaries.ts";
import type { OrphanGuard } from "./guard.ts";
import type { ServiceSpec } from "./service.ts";

/** Written once the data folder is fully initialised; a folder without it is redone. */
const MARKER = ".bunchat-initialized";
/** Unix socket paths longer than this do not fit in sockaddr_un (108 bytes on Linux). */
const MAX_SOCKET_PATH = 100;

// Shared by mariadb-install-db and mariadbd: small redo log and buffer pool for a dev box.
const SERVER_OPTS = ["--innodb-log-file-size=32M", "--innodb-buffer-pool-size=128M"];

export function mysqlSpec(opts: { port: number; dir: string; socket: string }): ServiceSpec {
  const socket = opts.socket.length <= MAX_SOCKET_PATH ? opts.socket : join(tmpdir(), `bunchat-mysql-${opts.port}.sock`);
  const user = isRoot() ? ["--user=root"] : [];
  const tmp = `${opts.dir}-tmp`;
  return {
    name: "mysql",
    port: opts.port,
    readyTimeoutMs: 60_000,
    stopTimeoutMs: 30_000,
    prepare: async ({ guard }) => {
      // A private temporary folder: with the shared /tmp, a concurrent MariaDB on the machine (or
      // a /tmp cleaner) removing "#sql-temptable-*" files made mariadb-install-db fail now and then.
      await mkdir(tmp, { recursive: true });
      await initDataDir(opts.dir, [...user, `--tmpdir=${tmp}`], guard);
    },
    command: () => [
      findBinary(["mariadbd", "mysqld"], "mariadb-server"),
      "--no-defaults", // must come first: ignore /etc/mysql and ~/.my.cnf
      ...user,
      `--datadir=${opts.dir}`,
      `--port=${opts.port}`,
      "--bind-address=127.0.0.1",
      `--socket=${socket}`,
      `--pid-file=${join(opts.dir, "mariadbd.pid")}`,
      "--skip-name-resolve",
      "--innodb-flush-log-at-trx-commit=1",
      "--character-set-server=utf8mb4",
      "--collation-server=utf8mb4_bin",
      "--max-connections=1000",
      `--tmpdir=${tmp}`,
      ...SERVER_OPTS,
    ],
    ready: () => answers(opts.port),
    afterReady: () => ensureRootOverTcp(opts.port, socket),
  };
}

async function initDataDir(dir: string, user: string[], guard?: OrphanGuard): Promise<void> {
  if (existsSync(join(dir, MARKER))) return;
  await rm(dir, { recursive: true, force: true }); // a half-initialised folder from a crash
  await mkdir(dir, { recursive: true });
  const install = findBinary(["mariadb-install-db", "mysql_install_db"], "mariadb-server");
  const child = new Child({
    cmd: [install, "--no-defaults", ...user, `--datadir=${dir}`, "--auth-root-authentication-method=normal", "--skip-test-db", ...SERVER_OPTS],
    guard,
  });
  const code = await child.exited;
  if (code !== 0) throw new Error(`mysql: ${install} failed with exit code ${code}; last output:\n${child.tail()}`);
  await writeFile(join(dir, MARKER), `${new Date().toISOString()}\n`);
}

const ACCESS_DENIED = new Set([1045, 1130]); // ER_ACCESS_DENIED_ERROR, ER_HOST_NOT_PRIVILEGED

/** True once the server answers on TCP, even if it refuses root (ensureRootOverTcp fixes that). */
async function answers(port: number): Promise<boolean> {
  try {
    const conn = await mysql.createConnection({ host: "127.0.0.1", port, user: "root", connectTimeout: 1000 });
    await conn.end();
    return true;
  } catch (err) {
    return ACCESS_DENIED.has((err as { errno?: number }).errno ?? 0);
  }
}

/** Some installs create root@localhost only; add root@127.0.0.1 (no password) through the socket. */
async function ensureRootOverTcp(port: number, socket: string): Promise<void> {
  try {
    const conn = await mysql.createConnection({ host: "127.0.0.1", port, user: "root" });
    await conn.end();
    return;
  } catch (err) {
    if (!ACCESS_DENIED.has((err as { errno?: number }).errno ?? 0)) throw err;
  }
  const admin = await mysql.createConnection({ socketPath: socket, user: "root" });
  try {
    await admin.query("CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'");
    await admin.query("GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION");
  } finally {
    await admin.end();
  }
}
