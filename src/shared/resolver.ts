// A grpc-js name resolver for targets "etcd://<watchId>/<service>": it feeds the live instance
// list of a Discovery watch to the channel, which balances calls round-robin across it.
// grpc-js registers resolvers globally by scheme, so watches are looked up by id in a map.
import * as grpc from "@grpc/grpc-js";
import type { Discovery, Instances, ServiceWatch } from "./discovery.ts";

const { registerResolver, statusOrFromValue, statusOrFromError } = grpc.experimental;

interface Source {
  discovery: Discovery;
  service: string;
}
const sources = new Map<string, Source>();
let nextId = 0;

class EtcdResolver implements grpc.experimental.Resolver {
  private watch?: Promise<ServiceWatch>;

  constructor(
    private readonly target: grpc.experimental.GrpcUri,
    private readonly listener: grpc.experimental.ResolverListener,
  ) {}

  private report(instances: Instances) {
    const endpoints = [...instances.values()]
      .filter((i) => i.addr)
      .map((i) => {
        const [host, port] = splitAddr(i.addr);
        return { addresses: [{ host, port }] };
      });
    if (endpoints.length) this.listener(statusOrFromValue(endpoints), {}, null, "");
    else this.listener(statusOrFromError({ code: grpc.status.UNAVAILABLE, details: "no live instance" }), {}, null, "");
  }

  updateResolution(): void {
    // Once watching, every change is pushed by the watch. Re-reporting here would loop: the
    // channel asks for re-resolution from inside the listener while no instance is reachable.
    if (this.watch) return;
    const src = sources.get(this.target.authority ?? "");
    if (!src) {
      queueMicrotask(() =>
        this.listener(statusOrFromError({ code: grpc.status.UNAVAILABLE, details: "unknown discovery source" }), {}, null, ""),
      );
      return;
    }
    this.watch = src.discovery.watch(src.service, (m) => this.report(m));
    this.watch.catch((err) =>
      this.listener(statusOrFromError({ code: grpc.status.UNAVAILABLE, details: `etcd: ${err.message}` }), {}, null, ""),
    );
  }

  destroy(): void {
    this.watch?.then((w) => w.close()).catch(() => undefined);
    this.watch = undefined;
  }

  static getDefaultAuthority(target: grpc.experimental.GrpcUri): string {
    return target.path;
  }
}

registerResolver("etcd", EtcdResolver);

export function splitAddr(addr: string): [string, number] {
  const i = addr.lastIndexOf(":");
  return [addr.slice(0, i), Number(addr.slice(i + 1))];
}

/** A channel target that resolves `service` through `discovery`. Call release() when the channel is closed. */
export function etcdTarget(discovery: Discovery, service: string): { target: string; release: () => void } {
  const id = `d${++nextId}`;
  sources.set(id, { discovery, service });
  return { target: `etcd://${id}/${service}`, release: () => sources.delete(id) };
}
