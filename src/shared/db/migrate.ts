// Applies migrations/NNN_name.sql in order, once each, recorded in schema_migrations.
// Safe to run from several processes at once: a named MySQL lock serialises them.
import mysql from "mysql2/promise";
import { readdir } from "node:fs/promises";
import { join } from "node:path";

const MIGRATIONS_DIR = join(import.meta.dir, "../../../migrations");

/** Creates the database named in the URL if missing, then applies pending migrations. Returns names applied. */
export async function migrate(url: string): Promise<string[]> {
  const u = new URL(url);
  const dbName = decodeURIComponent(u.pathname.slice(1));
  if (!/^[A-Za-z0-9_]+$/.test(dbName)) throw new Error(`invalid database name in IM_MYSQL_URL: ${dbName}`);
  u.pathname = "/";
  const admin = await mysql.createConnection({ uri: u.toString() });
  try {
    await admin.query(`CREATE DATABASE IF NOT EXISTS \`${dbName}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin`);
  } finally {
    await admin.end();
  }
  const conn = await mysql.createConnection({ uri: url, multipleStatements: true });
  try {
    await conn.query("SELECT GET_LOCK('bunchat_migrate', 60)");
    await conn.query("CREATE TABLE IF NOT EXISTS schema_migrations (name VARCHAR(255) PRIMARY KEY, applied_at BIGINT NOT NULL)");
    const [rows] = await conn.query("SELECT name FROM schema_migrations");
    const done = new Set((rows as { name: string }[]).map((r) => r.name));
    const files = (await readdir(MIGRATIONS_DIR)).filter((f) => /^\d+_.*\.sql$/.test(f)).sort();
    const applied: string[] = [];
    for (const f of files) {
      if (done.has(f)) continue;
      await conn.query(await Bun.file(join(MIGRATIONS_DIR, f)).text());
      await conn.query("INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)", [f, Date.now()]);
      applied.push(f);
    }
    return applied;
  } finally {
    await conn.query("SELECT RELEASE_LOCK('bunchat_migrate')").catch(() => undefined);
    await conn.end();
  }
}
