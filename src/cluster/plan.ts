// Which processes the cluster runs and on which ports: instance i of a role gets
// base + PORT_OFFSETS[...] + i (see src/shared/config.ts).
import { METRICS_OFFSETS, PORT_OFFSETS } from "../shared/config.ts";
import type { InfraPorts } from "../infra/index.ts";
import { ROLES, type Role } from "./args.ts";

export interface Instance {
  role: Role;
  index: number;
  /** e.g. "logic-1": prefixes its output lines. */
  name: string;
  /** IM_* variables set for this instance, on top of the parent's environment. */
  env: Record<string, string>;
  /** Base URL of its internal ops port: /healthz, /readyz, /metrics. */
  opsUrl: string;
  /** What clients use: the HTTP API for api, the WebSocket URL for connect. */
  publicUrl?: string;
}

const HOST = "127.0.0.1";

export function infraPorts(base: number): InfraPorts {
  return {
    redis: base + PORT_OFFSETS.redis,
    mysql: base + PORT_OFFSETS.mysql,
    etcd: base + PORT_OFFSETS.etcd,
    etcdPeer: base + PORT_OFFSETS.etcdPeer,
  };
}

export function planInstances(counts: Record<Role, number>, base: number): Instance[] {
  const out: Instance[] = [];
  for (const role of ROLES) {
    for (let i = 0; i < counts[role]; i++) {
      const at = (offset: number) => base + offset + i;
      const env: Record<string, string> = {};
      // Every role's internal ops port (/healthz, /readyz, /metrics), on loopback like the rest.
      const opsPort = at(METRICS_OFFSETS[role]);
      env.IM_METRICS_PORT = String(opsPort);
      let publicUrl: string | undefined;
      switch (role) {
        case "api":
          env.IM_API_PORT = String(at(PORT_OFFSETS.api));
          publicUrl = `http://${HOST}:${env.IM_API_PORT}`;
          break;
        case "logic":
          env.IM_LOGIC_PORT = String(at(PORT_OFFSETS.logic));
          break;
        case "task":
          break;
        case "connect":
          env.IM_CONNECT_PORT = String(at(PORT_OFFSETS.connect));
          env.IM_CONNECT_RPC_PORT = String(at(PORT_OFFSETS.connectRpc));
          publicUrl = `ws://${HOST}:${env.IM_CONNECT_PORT}/ws`;
          break;
      }
      out.push({ role, index: i, name: `${role}-${i}`, env, opsUrl: `http://${HOST}:${opsPort}`, publicUrl });
    }
  }
  return out;
}

/** Every TCP port the cluster listens on, with who uses it: checked before anything starts. */
export function allPorts(instances: Instance[], infra: InfraPorts): Map<number, string> {
  const ports = new Map<number, string>();
  for (const [name, port] of Object.entries(infra)) ports.set(port, name);
  for (const inst of instances) {
    for (const [k, v] of Object.entries(inst.env)) if (k.endsWith("_PORT")) ports.set(Number(v), `${inst.name} (${k})`);
  }
  return ports;
}

/** The one line printed on stdout once every instance is healthy (the public contract); "metrics" lists every instance's ops port. */
export function readyLine(instances: Instance[]): string {
  const publicOf = (role: Role) => instances.filter((i) => i.role === role).map((i) => i.publicUrl!);
  return JSON.stringify({ event: "ready", api: publicOf("api"), connect: publicOf("connect"), metrics: instances.map((i) => i.opsUrl) });
}
