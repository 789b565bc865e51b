// The api role: the Elysia app on IM_API_PORT, calling logic through the etcd resolver, and
// answering /api/gateway from the ready connect instances in etcd (gateway-pick.ts), or
// with IM_PUBLIC_WS_URL (the load balancer's URL) while at least one is ready; plus the internal
// ops port (/healthz, /readyz, /metrics).
import type { Config } from "../shared/config.ts";
import type { Logger } from "../shared/log.ts";
import type { Discovery, ServiceWatch } from "../shared/discovery.ts";
import { etcdTarget } from "../shared/resolver.ts";
import { localClient, makeClient, type Client } from "../shared/rpc.ts";
import { clusterAuthFor } from "../shared/cluster-auth.ts";
import { newRegistry, serveOps } from "../shared/ops.ts";
import { LIMITS } from "../shared/protocol.ts";
import { LogicService, LOGIC_SERVICE, type LogicApi } from "../../proto/logic.ts";
import { CONNECT_SERVICE } from "../../proto/connect.ts";
import { createApiApp } from "./app.ts";
import { pickConnect } from "./gateway-pick.ts";
import { webAssets } from "./web/build.ts";

export class ApiServer {
  private logic?: Client<LogicApi>;
  private releaseTarget?: () => void;
  private connects?: ServiceWatch;
  private server?: ReturnType<ReturnType<typeof createApiApp>["listen"]>["server"];
  private ops?: ReturnType<typeof serveOps>;
  readonly registry = newRegistry("api");
  private ready = false;
  port = 0;

  constructor(
    private readonly deps: {
      config: Readonly<Config>;
      log: Logger;
      discovery: Discovery;
      instanceId: string;
      /** A logic co-located in this process (src/bin/node.ts): called in-process instead of over gRPC. */
      localLogic?: LogicApi;
    },
  ) {}

  /** IM_PUBLIC_WS_URL, or a ready connect instance's ws URL (pickConnect); undefined while none is ready. */
  private gateway(): string | undefined {
    const url = pickConnect(this.connects?.instances().values() ?? []);
    return url && (this.deps.config.publicWsUrl || url);
  }

  /** The internal ops port (/healthz, /readyz, /metrics). */
  get metricsPort(): number {
    return this.ops?.port ?? 0;
  }

  async start(): Promise<void> {
    const { config, log, discovery, instanceId } = this.deps;
    const auth = clusterAuthFor(config);
    if (this.deps.localLogic) this.logic = localClient<LogicApi>(LogicService, this.deps.localLogic, log);
    else {
      const t = etcdTarget(discovery, LOGIC_SERVICE);
      this.releaseTarget = t.release;
      this.logic = makeClient<LogicApi>(LogicService, t.target, undefined, auth);
    }
    this.connects = await discovery.watch(CONNECT_SERVICE);
    const app = createApiApp({
      logic: this.logic,
      log,
      registry: this.registry,
      instanceId,
      gateway: () => this.gateway(),
      ready: () => this.ready,
      trustedProxies: config.trustedProxies,
      // The page's connect-src: the public WebSocket URL when one is set (behind a balancer), else
      // every live connect instance's own origin.
      wsOrigins: () =>
        config.publicWsUrl
          ? [new URL(config.publicWsUrl).origin]
          : [...(this.connects?.instances().values() ?? [])].flatMap((i) => (typeof i.meta?.wsUrl === "string" ? [new URL(i.meta.wsUrl).origin] : [])),
      sendTimeoutMs: config.sendTimeoutMs,
    });
    await webAssets(); // built before the port opens, so a build error stops the start
    // Bodies over LIMITS.maxHttpBody are refused with the JSON envelope by the app (by content-length,
    // or after reading a chunked one); Bun's own cap, set higher, bounds what such a read can hold.
    app.listen({ port: config.apiPort, hostname: config.publicBindHost, maxRequestBodySize: 16 * LIMITS.maxHttpBody });
    this.server = app.server ?? undefined;
    this.port = this.server?.port ?? 0;
    // api keeps no store: ready when etcd answers and lists at least one logic instance to call.
    const logicKey = discovery.serviceKey(LOGIC_SERVICE);
    const checks = [
      {
        name: "logic instances in etcd",
        check: async () => {
          if (!(await discovery.etcd.getAll().prefix(logicKey).count())) throw new Error("none registered");
        },
      },
    ];
    this.ops = serveOps(config.metricsHost, config.metricsPort, { registry: this.registry, live: () => this.ready, checks });
    this.ready = true;
    log.info("api ready", { port: this.port, metricsPort: this.ops.port });
  }

  async stop(): Promise<void> {
    this.ready = false;
    await this.server?.stop();
    this.ops?.stop(true);
    await this.connects?.close().catch(() => undefined);
    this.logic?.close();
    this.releaseTarget?.();
  }
}
