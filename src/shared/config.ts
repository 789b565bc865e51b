// Configuration is read once, from IM_* environment variables, by one pure function.
// Every problem is reported at once; unknown IM_* names are returned as warnings.

import { availableParallelism } from "node:os";

export const DEFAULT_BASE_PORT = 17000;

/** Port offsets from the base port; the local cluster moves them all with --base-port. */
export const PORT_OFFSETS = {
  redis: 0,
  mysql: 1,
  etcd: 2,
  etcdPeer: 3,
  api: 10,
  logic: 20,
  logicMetrics: 30,
  connect: 40,
  connectRpc: 50,
  taskMetrics: 60,
  apiMetrics: 70,
  connectMetrics: 80,
} as const;

/** The default ops port (/healthz, /readyz, /metrics) of each role, as an offset from the base port. */
export const METRICS_OFFSETS = {
  api: PORT_OFFSETS.apiMetrics,
  logic: PORT_OFFSETS.logicMetrics,
  task: PORT_OFFSETS.taskMetrics,
  connect: PORT_OFFSETS.connectMetrics,
} as const;

/** IM_HOST / IM_METRICS_HOST value meaning: the address of the interface that reaches etcd (src/shared/host.ts). */
export const AUTO_HOST = "auto";

export interface Config {
  redisUrl: string;
  mysqlUrl: string;
  etcdEndpoints: string[];
  /** Key prefix in etcd for service registration, worker ids and partition locks. */
  etcdPrefix: string;
  /** Key prefix in Redis: lets tests share one Redis without seeing each other. */
  redisPrefix: string;
  /** Address this instance advertises to others (gRPC and WebSocket URLs); "auto" until runRole resolves it. */
  host: string;
  /** Internal address the ops port (/healthz, /readyz, /metrics) binds to; defaults to host. */
  metricsHost: string;
  /** What /api/gateway hands out when set (e.g. wss://chat.example.com/ws): the load balancer's URL; "" = the instance's own. */
  publicWsUrl: string;
  apiPort: number;
  logicPort: number;
  connectPort: number;
  connectRpcPort: number;
  /** Internal HTTP port for /healthz, /readyz and /metrics (every role; default per role, see METRICS_OFFSETS). */
  metricsPort: number;
  /** etcd lease TTL in seconds: a dead instance disappears from discovery within this. */
  leaseTtlSec: number;
  sessionTtlSec: number;
  /** Per-user send budget, HTTP and WS together (token bucket). */
  rateLimitPerSec: number;
  rateLimitBurst: number;
  /** Failed logins per user name within loginLockSec before 429. */
  loginMaxFailures: number;
  loginLockSec: number;
  /** Number of Redis streams messages are partitioned over (by conversation). Fixed for a deployment. */
  streamPartitions: number;
  /** Task's push group reads a partition stream at most every this many ms (0: as soon as entries come). */
  pushIntervalMs: number;
  /**
   * Connect holds the first send after an idle spell this many ms for company before calling
   * logic (0: at once; sends made while a call is in flight always go together in the next).
   */
  sendLingerMs: number;
  /** Task's persist group waits this many ms after a partial read before reading again (larger, fewer MySQL writes). */
  persistLingerMs: number;
  maxRoomsPerConn: number;
  pingIntervalMs: number;
  idleTimeoutMs: number;
  /** Bytes a slow WebSocket reader may have queued before it is closed with 4429. */
  wsMaxBuffered: number;
  logLevel: "debug" | "info" | "warn" | "error";
  /**
   * Shared secrets for calls between tiers (IM_CLUSTER_SECRET, comma list): the first is sent,
   * every one is accepted, so a secret is rotated by listing new,old on every instance, then new.
   * Empty only in a loopback-only setup (see src/shared/cluster-auth.ts).
   */
  clusterSecrets: string[];
  /** Peers (addresses or CIDRs) whose X-Forwarded-For the api believes; empty: none. */
  trustedProxies: string[];
  /** Logins plus registrations per client address per authAddrWindowSec, whatever the names. */
  authAddrLimit: number;
  authAddrWindowSec: number;
  /** Password hashes/verifications run at once per logic instance, and how many may wait; more is 429. */
  hashConcurrency: number;
  hashQueue: number;
  /** Scheduling priority (nice, 0-19) of the hashing threads: what a login flood takes is what the rest leaves. */
  hashNice: number;
  /** Address the public listeners (api HTTP, connect WebSocket) bind to; the local cluster uses loopback. */
  publicBindHost: string;
  /** A send is answered within this (ms): accepted, or UNAVAILABLE and never stored later. */
  sendTimeoutMs: number;
  /**
   * When a send is acknowledged (README "Acknowledgement modes"): "memory" once Redis ran the send
   * script; "fsync" once it is also in Redis's AOF on disk (Redis must run appendfsync always);
   * "replica" once a replica has it too (WAIT).
   */
  ackMode: "memory" | "fsync" | "replica";
}

type Env = Record<string, string | undefined>;

interface Spec {
  key: keyof Config;
  kind: "string" | "port" | "int" | "list" | "optlist" | "level" | "wsUrl" | "ack";
  def: (env: Env) => string;
  min?: number;
  max?: number;
}

const base = (env: Env) => {
  const b = Number(env.IM_BASE_PORT ?? DEFAULT_BASE_PORT);
  return Number.isInteger(b) ? b : DEFAULT_BASE_PORT;
};
const port = (off: number) => (env: Env) => String(base(env) + off);

const SPECS: Record<string, Spec> = {
  IM_REDIS_URL: { key: "redisUrl", kind: "string", def: (e) => `redis://127.0.0.1:${base(e) + PORT_OFFSETS.redis}` },
  IM_MYSQL_URL: { key: "mysqlUrl", kind: "string", def: (e) => `mysql://root@127.0.0.1:${base(e) + PORT_OFFSETS.mysql}/bunchat` },
  IM_ETCD_ENDPOINTS: { key: "etcdEndpoints", kind: "list", def: (e) => `http://127.0.0.1:${base(e) + PORT_OFFSETS.etcd}` },
  IM_ETCD_PREFIX: { key: "etcdPrefix", kind: "string", def: () => "/bunchat" },
  IM_REDIS_PREFIX: { key: "redisPrefix", kind: "string", def: () => "im:" },
  IM_HOST: { key: "host", kind: "string", def: () => "127.0.0.1" },
  IM_METRICS_HOST: { key: "metricsHost", kind: "string", def: (e) => e.IM_HOST || "127.0.0.1" },
  IM_PUBLIC_WS_URL: { key: "publicWsUrl", kind: "wsUrl", def: () => "" },
  IM_API_PORT: { key: "apiPort", kind: "port", def: port(PORT_OFFSETS.api) },
  IM_LOGIC_PORT: { key: "logicPort", kind: "port", def: port(PORT_OFFSETS.logic) },
  IM_CONNECT_PORT: { key: "connectPort", kind: "port", def: port(PORT_OFFSETS.connect) },
  IM_CONNECT_RPC_PORT: { key: "connectRpcPort", kind: "port", def: port(PORT_OFFSETS.connectRpc) },
  IM_METRICS_PORT: { key: "metricsPort", kind: "port", def: port(PORT_OFFSETS.logicMetrics) },
  IM_LEASE_TTL: { key: "leaseTtlSec", kind: "int", def: () => "5", min: 2 },
  IM_SESSION_TTL: { key: "sessionTtlSec", kind: "int", def: () => String(24 * 3600), min: 1 },
  IM_RATE_LIMIT: { key: "rateLimitPerSec", kind: "int", def: () => "50", min: 1 },
  IM_RATE_BURST: { key: "rateLimitBurst", kind: "int", def: () => "50", min: 1 },
  IM_LOGIN_MAX_FAILURES: { key: "loginMaxFailures", kind: "int", def: () => "10", min: 1 },
  IM_LOGIN_LOCK: { key: "loginLockSec", kind: "int", def: () => "300", min: 1 },
  IM_STREAM_PARTITIONS: { key: "streamPartitions", kind: "int", def: () => "8", min: 1 },
  IM_PUSH_INTERVAL_MS: { key: "pushIntervalMs", kind: "int", def: () => "10", min: 0 },
  IM_SEND_LINGER_MS: { key: "sendLingerMs", kind: "int", def: () => "0", min: 0, max: 100 },
  IM_PERSIST_LINGER_MS: { key: "persistLingerMs", kind: "int", def: () => "200", min: 0 },
  IM_MAX_ROOMS: { key: "maxRoomsPerConn", kind: "int", def: () => "100", min: 1 },
  IM_PING_INTERVAL_MS: { key: "pingIntervalMs", kind: "int", def: () => "25000", min: 100 },
  IM_IDLE_TIMEOUT_MS: { key: "idleTimeoutMs", kind: "int", def: () => "60000", min: 200 },
  IM_WS_MAX_BUFFERED: { key: "wsMaxBuffered", kind: "int", def: () => String(4 << 20), min: 1024 },
  IM_LOG_LEVEL: { key: "logLevel", kind: "level", def: () => "info" },
  IM_CLUSTER_SECRET: { key: "clusterSecrets", kind: "optlist", def: () => "" },
  IM_TRUSTED_PROXIES: { key: "trustedProxies", kind: "optlist", def: () => "" },
  IM_AUTH_ADDR_LIMIT: { key: "authAddrLimit", kind: "int", def: () => "300", min: 1 },
  IM_AUTH_ADDR_WINDOW: { key: "authAddrWindowSec", kind: "int", def: () => "60", min: 1 },
  // Half the cores: the other half keeps serving sends and token checks during a login flood.
  IM_HASH_CONCURRENCY: { key: "hashConcurrency", kind: "int", def: () => String(Math.max(1, Math.floor(availableParallelism() / 2))), min: 1 },
  IM_HASH_QUEUE: { key: "hashQueue", kind: "int", def: () => "16", min: 0 },
  IM_HASH_NICE: { key: "hashNice", kind: "int", def: () => "10", min: 0 },
  IM_PUBLIC_BIND: { key: "publicBindHost", kind: "string", def: () => "0.0.0.0" },
  IM_SEND_TIMEOUT_MS: { key: "sendTimeoutMs", kind: "int", def: () => "5000", min: 500 },
  IM_ACK_MODE: { key: "ackMode", kind: "ack", def: () => "memory" },
};
/** Read by the cluster runner and config defaults, not a Config field. */
const EXTRA_KNOWN = new Set(["IM_BASE_PORT"]);

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join("\n  ")}`);
  }
}

export interface Loaded {
  config: Readonly<Config>;
  warnings: string[];
}

export function loadConfig(env: Env = process.env, overrides: Partial<Config> = {}): Loaded {
  const problems: string[] = [];
  const out: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(SPECS)) {
    const raw = env[name] ?? spec.def(env);
    switch (spec.kind) {
      case "string":
        if (!raw) problems.push(`${name} must not be empty`);
        out[spec.key] = raw;
        break;
      case "optlist":
        out[spec.key] = raw.split(",").map((s) => s.trim()).filter(Boolean);
        break;
      case "list": {
        const list = raw.split(",").map((s) => s.trim()).filter(Boolean);
        if (!list.length) problems.push(`${name} must list at least one endpoint`);
        out[spec.key] = list;
        break;
      }
      case "port":
      case "int": {
        const n = Number(raw);
        const min = spec.kind === "port" ? 0 : (spec.min ?? 0);
        const max = spec.kind === "port" ? 65535 : (spec.max ?? Number.MAX_SAFE_INTEGER);
        if (!/^\d+$/.test(raw) || n < min || n > max) problems.push(`${name}=${raw} must be an integer in ${min}..${max}`);
        out[spec.key] = n;
        break;
      }
      case "wsUrl":
        if (raw && !/^wss?:\/\/[^\s/?#]+(\/[^\s]*)?$/.test(raw)) problems.push(`${name}=${raw} must be a ws:// or wss:// URL`);
        out[spec.key] = raw;
        break;
      case "level":
        if (!["debug", "info", "warn", "error"].includes(raw)) problems.push(`${name}=${raw} must be debug, info, warn or error`);
        out[spec.key] = raw;
        break;
      case "ack":
        if (!["memory", "fsync", "replica"].includes(raw)) problems.push(`${name}=${raw} must be memory, fsync or replica`);
        out[spec.key] = raw;
        break;
    }
  }
  if (problems.length) throw new ConfigError(problems);
  const warnings = Object.keys(env)
    .filter((k) => k.startsWith("IM_") && !(k in SPECS) && !EXTRA_KNOWN.has(k))
    .map((k) => `unknown environment variable ${k} is ignored`);
  return { config: Object.freeze({ ...(out as unknown as Config), ...overrides }), warnings };
}
