// Stream trimming: a partition stream is cut only below what every consumer group has finished
// with, i.e. the minimum over groups of (oldest pending id if any is pending, else the last id
// delivered to the group). Entries at or above that stay, so nothing unacked is ever lost.
import type { Redis } from "ioredis";
import { compareIds } from "./consumer.ts";

/** The id below which every group has acked everything; null if a group is missing or nothing was read. */
export async function safeTrimId(redis: Redis, stream: string, groups: readonly string[]): Promise<string | null> {
  const tx = redis.multi().xinfo("GROUPS", stream);
  for (const g of groups) tx.xpending(stream, g);
  const res = await tx.exec();
  if (!res) return null;
  const [infoErr, info] = res[0];
  if (infoErr) throw infoErr;
  const lastDelivered = new Map<string, string>();
  for (const g of info as unknown[][]) {
    const f = fieldMap(g);
    lastDelivered.set(String(f.get("name")), String(f.get("last-delivered-id")));
  }
  let min: string | null = null;
  for (let i = 0; i < groups.length; i++) {
    const last = lastDelivered.get(groups[i]);
    if (!last) return null;
    const [err, summary] = res[i + 1];
    if (err) throw err;
    const [count, oldest] = summary as [number, string | null];
    const floor = count > 0 && oldest ? oldest : last;
    if (min === null || compareIds(floor, min) < 0) min = floor;
  }
  return min === "0-0" ? null : min;
}

/** Trims the stream below safeTrimId; returns the number of entries removed. */
export async function trimStream(redis: Redis, stream: string, groups: readonly string[]): Promise<number> {
  const min = await safeTrimId(redis, stream, groups);
  if (!min) return 0;
  return Number(await redis.xtrim(stream, "MINID", min));
}

function fieldMap(flat: unknown[]): Map<string, unknown> {
  const m = new Map<string, unknown>();
  for (let i = 0; i + 1 < flat.length; i += 2) m.set(String(flat[i]), flat[i + 1]);
  return m;
}
