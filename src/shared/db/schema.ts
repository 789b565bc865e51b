// drizzle table definitions; the DDL lives in migrations/*.sql (the versioned source of truth).
import { bigint, mysqlTable, text, varchar } from "drizzle-orm/mysql-core";

export const users = mysqlTable("users", {
  id: bigint("id", { mode: "number", unsigned: true }).primaryKey().autoincrement(),
  name: varchar("name", { length: 32 }).notNull(),
  nameLower: varchar("name_lower", { length: 32 }).notNull(),
  passwordHash: varchar("password_hash", { length: 255 }).notNull(),
  createdAt: bigint("created_at", { mode: "number" }).notNull(),
});

export const messages = mysqlTable("messages", {
  id: bigint("id", { mode: "bigint", unsigned: true }).primaryKey(),
  conv: varchar("conv", { length: 80 }).notNull(),
  seq: bigint("seq", { mode: "number", unsigned: true }).notNull(),
  senderId: bigint("sender_id", { mode: "number", unsigned: true }).notNull(),
  senderName: varchar("sender_name", { length: 32 }).notNull(),
  body: text("body").notNull(),
  ts: bigint("ts", { mode: "number" }).notNull(),
  clientMsgId: varchar("client_msg_id", { length: 64 }),
});

/** migrations/002_read_positions.sql: per user and conversation, the highest seq read. */
export const readPositions = mysqlTable("read_positions", {
  userId: bigint("user_id", { mode: "number", unsigned: true }).notNull(),
  conv: varchar("conv", { length: 80 }).notNull(),
  readSeq: bigint("read_seq", { mode: "number", unsigned: true }).notNull(),
});
