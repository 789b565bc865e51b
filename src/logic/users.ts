// User look-up by name (CONTRACT.md v1.1 `GET /api/users?name=`).
import { eq } from "drizzle-orm";
import type { Db } from "../shared/db/index.ts";
import { users } from "../shared/db/schema.ts";
import { AppError, badRequest } from "../shared/errors.ts";
import { USER_NAME_RE, type UserRef } from "../shared/protocol.ts";

/**
 * The user registered under name, ignoring case (users.name_lower is unique), with the name as
 * registered. Errors: BAD_REQUEST if name is not a valid userName, NOT_FOUND if nobody has it.
 */
export async function userByName(db: Db, name: unknown): Promise<UserRef> {
  if (typeof name !== "string" || !USER_NAME_RE.test(name)) throw badRequest("name must be a userName: 3-32 characters of A-Z a-z 0-9 _ . -");
  const [row] = await db.select({ id: users.id, name: users.name }).from(users).where(eq(users.nameLower, name.toLowerCase())).limit(1);
  if (!row) throw new AppError("NOT_FOUND", "no such user");
  return { userId: Number(row.id), userName: row.name };
}
