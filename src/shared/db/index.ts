import mysql from "mysql2/promise";
import { drizzle, type MySql2Database } from "drizzle-orm/mysql2";
import * as schema from "./schema.ts";

export type Db = MySql2Database<typeof schema>;

export interface DbHandle {
  db: Db;
  pool: mysql.Pool;
  close(): Promise<void>;
}

export function openDb(url: string, connectionLimit = 10): DbHandle {
  const pool = mysql.createPool({ uri: url, connectionLimit, supportBigNumbers: true, bigNumberStrings: true, charset: "utf8mb4" });
  const db = drizzle(pool, { schema, mode: "default" });
  return { db, pool, close: () => pool.end() };
}

/** The mysql2 pool under a Db made by openDb (drizzle keeps the client it was given as $client). */
export function poolOf(db: Db): mysql.Pool {
  const pool = (db as Db & { $client?: mysql.Pool }).$client;
  if (!pool) throw new Error("poolOf: not a Db made by openDb");
  return pool;
}

/** The MySQL error code of a (drizzle-wrapped) driver error, e.g. ER_DUP_ENTRY. */
export function mysqlCode(err: unknown): string | undefined {
  const e = err as { code?: string; cause?: { code?: string } };
  return e?.cause?.code ?? e?.code;
}
