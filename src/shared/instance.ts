// Instance ids are unique per process start, so a restarted process never inherits a dead one's state.
import { hostname } from "node:os";

export function newInstanceId(role: string): string {
  return `${role}-${hostname().slice(0, 16)}-${process.pid}-${crypto.randomUUID().slice(0, 8)}`;
}
