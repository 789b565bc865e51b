// Authentication of calls between tiers (LogicRPC, ConnectRPC): a shared cluster secret in the
// call metadata, checked by a server interceptor before any handler runs (see rpc.ts).
// Why a secret and not mTLS: every tier already trusts the same stores, a secret is one variable
// to set and rotate, and `bun run cluster` can make one per data dir; the price is that it travels
// in clear on the internal network (h2c), so that network must be private. The secret is compared
// in constant time (SHA-256 of both sides, then timingSafeEqual, over every accepted secret).
import { timingSafeEqual } from "node:crypto";
import { isIP } from "node:net";
import type { Metadata } from "@grpc/grpc-js";
import { Counter, type Registry } from "prom-client";
import { ConfigError, type Config } from "./config.ts";

/** The metadata key carrying the secret on every internal call. */
export const SECRET_METADATA_KEY = "x-bunchat-cluster-secret";
/** Shortest secret accepted: 32 characters (e.g. 24 random bytes in base64url). */
export const MIN_SECRET_LENGTH = 32;

const digest = (s: string) => new Bun.CryptoHasher("sha256").update(s).digest();

export class ClusterAuth {
  private readonly accepted: Buffer[];

  /**
   * secrets: IM_CLUSTER_SECRET split on commas; the first is sent, all are accepted (rotation).
   * An empty list is the open mode of a loopback-only setup: nothing is sent or checked.
   */
  constructor(readonly secrets: readonly string[]) {
    this.accepted = secrets.map(digest);
  }

  get open(): boolean {
    return this.secrets.length === 0;
  }

  /** The secret a client sends, or undefined in open mode. */
  get outgoing(): string | undefined {
    return this.secrets[0];
  }

  /** True if md carries one of the accepted secrets (always true in open mode). */
  verify(md: Metadata): boolean {
    if (this.open) return true;
    const values = md.get(SECRET_METADATA_KEY);
    if (values.length !== 1 || typeof values[0] !== "string") return false;
    const got = digest(values[0]);
    let ok = false;
    for (const a of this.accepted) ok = timingSafeEqual(a, got) || ok; // no early exit
    return ok;
  }
}

const LOOPBACK_NAMES = new Set(["localhost", "ip6-localhost", "ip6-loopback"]);

/** True for 127.0.0.0/8, ::1 (and ::ffff:127.x) and localhost. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  if (LOOPBACK_NAMES.has(h)) return true;
  if (isIP(h) === 4) return h.startsWith("127.");
  if (isIP(h) === 6) return h === "::1" || /^::ffff:127\./.test(h) || h === "0:0:0:0:0:0:0:1";
  return false;
}

const urlHost = (u: string): string => {
  try {
    return new URL(u).hostname;
  } catch {
    return u;
  }
};

/**
 * The role's cluster credentials, or a ConfigError naming IM_CLUSTER_SECRET when the role would
 * run open (no secret) although something it listens on or talks to (IM_HOST, Redis, MySQL, etcd)
 * is not on loopback. Peers are found in etcd and each refuses the same way, so in a loopback-only
 * setup every peer is on loopback too. A secret shorter than MIN_SECRET_LENGTH is refused.
 * @param uses which stores the role connects to (the api uses none but etcd).
 */
export function clusterAuthFor(config: Readonly<Config>, uses: { redis?: boolean; mysql?: boolean } = {}): ClusterAuth {
  const short = config.clusterSecrets.filter((s) => s.length < MIN_SECRET_LENGTH);
  if (short.length) throw new ConfigError([`IM_CLUSTER_SECRET: every secret must be at least ${MIN_SECRET_LENGTH} characters`]);
  if (config.clusterSecrets.length) return new ClusterAuth(config.clusterSecrets);
  const outside: string[] = [];
  if (!isLoopbackHost(config.host)) outside.push(`IM_HOST=${config.host}`);
  if (uses.redis && !isLoopbackHost(urlHost(config.redisUrl))) outside.push("IM_REDIS_URL");
  if (uses.mysql && !isLoopbackHost(urlHost(config.mysqlUrl))) outside.push("IM_MYSQL_URL");
  for (const e of config.etcdEndpoints) if (!isLoopbackHost(urlHost(e))) outside.push(`IM_ETCD_ENDPOINTS (${urlHost(e)})`);
  if (outside.length)
    throw new ConfigError([
      `IM_CLUSTER_SECRET must be set (the same secret, ${MIN_SECRET_LENGTH}+ characters, on every instance): ` +
        `calls between tiers cannot be left unauthenticated when not everything is on loopback: ${outside.join(", ")}`,
    ]);
  return new ClusterAuth([]);
}

/** bunchat_rpc_unauthenticated_total{path}: internal calls refused for missing or wrong credentials. */
export function refusedCounter(registry: Registry): (path: string) => void {
  const c = new Counter({
    name: "bunchat_rpc_unauthenticated_total",
    help: "Internal (gRPC) calls refused for missing or wrong cluster credentials",
    labelNames: ["path"],
    registers: [registry],
  });
  return (path) => c.inc({ path });
}
