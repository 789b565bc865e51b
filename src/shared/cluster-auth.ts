// Authentication of calls between tiers (LogicRPC, ConnectRPC): a shared cluster secret in the
// call metadata, checked by a server interceptor before any handler runs (see rpc.ts).
// Why a secret and not mTLS: every tier already trusts the same stores, a secret is one variable
// to set and rotate, and `bun run cluster` can make one per data dir; the price is that it travels
// in clear on the internal network (h2c), so that network must be private. The secret is compared
// in constant time (SHA-256 of both sides, then timingSafeEqual, over every accepted secret).
import { timingSafeEqual } from "node:crypto";
import type { Metadata } from "@grpc/grpc-js";
import { Counter, type Registry } from "prom-client";
import { ConfigError, type Config } from "./config.ts";
import { isLoopback } from "./host.ts";

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
  if (!isLoopback(config.host)) outside.push(`IM_HOST=${config.host}`);
  if (uses.redis && !isLoopback(config.redisUrl)) outside.push("IM_REDIS_URL");
  if (uses.mysql && !isLoopback(config.mysqlUrl)) outside.push("IM_MYSQL_URL");
  for (const e of config.etcdEndpoints) if (!isLoopback(e)) outside.push(`IM_ETCD_ENDPOINTS (${e})`);
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
