// The api role: the Elysia app on IM_API_PORT, calling logic through the etcd resolver, and
// answering /api/gateway from the live connect instances in etcd (least connections first).
import type { Config } from "../shared/config.ts";
import type { Logger } from "../shared/log.ts";
import type { Discovery, ServiceWatch } from "../shared/discovery.ts";
import { etcdTarget } from "../shared/resolver.ts";
import { makeClient, type Client } from "../shared/rpc.ts";
import { newRegistry } from "../shared/ops.ts";
import { LIMITS } from "../shared/protocol.ts";
import { LogicService, LOGIC_SERVICE, type LogicApi } from "../../proto/logic.ts";
import { CONNECT_SERVICE } from "../../proto/connect.ts";
import { createApiApp } from "./app.ts";

export class ApiServer {
  private logic?: Client<LogicApi>;
  private releaseTarget?: () => void;
  private connects?: ServiceWatch;
  private server?: ReturnType<ReturnType<typeof createApiApp>["listen"]>["server"];
  private ready = false;
  port = 0;

  constructor(private readonly deps: { config: Readonly<Config>; log: Logger; discovery: Discovery; instanceId: string }) {}

  /** The least-loaded live connect instance's ws URL. */
  private gateway(): string | undefined {
    let best: { url: string; conns: number } | undefined;
    for (const i of this.connects?.instances().values() ?? []) {
      const url = i.meta?.wsUrl;
      const conns = Number(i.meta?.conns ?? 0);
      if (typeof url === "string" && (!best || conns < best.conns)) best = { url, conns };
    }
    return best?.url;
  }

  async start(): Promise<void> {
    const { config, log, discovery, instanceId } = this.deps;
    const t = etcdTarget(discovery, LOGIC_SERVICE);
    this.releaseTarget = t.release;
    this.logic = makeClient<LogicApi>(LogicService, t.target);
    this.connects = await discovery.watch(CONNECT_SERVICE);
    const app = createApiApp({
      logic: this.logic,
      log,
      registry: newRegistry("api", instanceId),
      instanceId,
      gateway: () => this.gateway(),
      ready: () => this.ready,
      sendTimeoutMs: config.sendTimeoutMs,
    });
    // Bodies over LIMITS.maxHttpBody are refused with the JSON envelope by the app (by content-length,
    // or after reading a chunked one); Bun's own cap, set higher, bounds what such a read can hold.
    app.listen({ port: config.apiPort, hostname: "0.0.0.0", maxRequestBodySize: 16 * LIMITS.maxHttpBody });
    this.server = app.server ?? undefined;
    this.port = this.server?.port ?? 0;
    this.ready = true;
    log.info("api ready", { port: this.port });
  }

  async stop(): Promise<void> {
    this.ready = false;
    await this.server?.stop();
    await this.connects?.close().catch(() => undefined);
    this.logic?.close();
    this.releaseTarget?.();
  }
}
