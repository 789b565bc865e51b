// One place that turns IM_REDIS_URL into an ioredis client: a plain redis:// URL, or Redis
// Sentinel as redis-sentinel://[:password@]host:port[,host:port…]/<master name>[?db=N], which
// makes ioredis ask the sentinels for the current primary and reconnect to the new one after a
// failover.
import Redis, { type RedisOptions } from "ioredis";
import "./tracing-channel.ts";

/**
 * ioredis options for a URL. Throws Error("invalid IM_REDIS_URL: …") for a sentinel URL without
 * hosts or master name. A redis:// URL is parsed by ioredis itself (returned as `url`).
 */
export function redisTarget(url: string): { url?: string; options: RedisOptions } {
  if (!url.startsWith("redis-sentinel://")) return { url, options: {} };
  const rest = url.slice("redis-sentinel://".length);
  const at = rest.lastIndexOf("@");
  const auth = at >= 0 ? decodeURIComponent(rest.slice(0, at)) : "";
  const [hostPart, tail = ""] = (at >= 0 ? rest.slice(at + 1) : rest).split("/", 2);
  const [name, query = ""] = tail.split("?", 2);
  const sentinels = hostPart
    .split(",")
    .filter(Boolean)
    .map((hp) => {
      const i = hp.lastIndexOf(":");
      const port = Number(i >= 0 ? hp.slice(i + 1) : 26379);
      if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`invalid IM_REDIS_URL: bad sentinel port in ${hp}`);
      return { host: i >= 0 ? hp.slice(0, i) : hp, port };
    });
  if (!sentinels.length || !name) throw new Error("invalid IM_REDIS_URL: redis-sentinel://host:port[,host:port…]/<master name>");
  const password = auth.includes(":") ? auth.slice(auth.indexOf(":") + 1) : auth;
  const db = Number(new URLSearchParams(query).get("db") ?? 0);
  return { options: { sentinels, name: decodeURIComponent(name), db, ...(password ? { password } : {}) } };
}

/** A client for IM_REDIS_URL (plain or Sentinel) with extra options. */
export function createRedis(url: string, options: RedisOptions = {}): Redis {
  const t = redisTarget(url);
  return t.url ? new Redis(t.url, options) : new Redis({ ...t.options, ...options });
}

/**
 * Options for a client on the send path: a command is never queued while disconnected nor
 * re-sent after a reconnect (a write the caller was told failed must not run later), and it
 * gives up after timeoutMs.
 */
export const noLateWrites = (timeoutMs: number): RedisOptions => ({
  enableOfflineQueue: false,
  autoResendUnfulfilledCommands: false,
  maxRetriesPerRequest: 0,
  commandTimeout: timeoutMs,
});
