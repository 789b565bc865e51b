// redis-server with an append-only file (fsync every second) and no RDB snapshots.
import { mkdir } from "node:fs/promises";
import { connect } from "node:net";
import { findBinary } from "./binaries.ts";
import type { ServiceSpec } from "./service.ts";

export function redisSpec(opts: { port: number; dir: string }): ServiceSpec {
  return {
    name: "redis",
    port: opts.port,
    readyTimeoutMs: 30_000,
    stopTimeoutMs: 10_000,
    prepare: async () => {
      await mkdir(opts.dir, { recursive: true });
    },
    command: () => [
      findBinary(["redis-server"], "redis-server"),
      "--port", String(opts.port),
      "--bind", "127.0.0.1",
      "--dir", opts.dir,
      "--appendonly", "yes",
      "--appendfsync", "everysec",
      "--save", "",
      "--daemonize", "no",
      "--logfile", "",
    ],
    ready: () => redisPing(opts.port),
  };
}

/** True when the server answers PING with PONG (not while it is still loading its data). */
export function redisPing(port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ host: "127.0.0.1", port });
    let reply = "";
    const finish = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => finish(false));
    sock.on("connect", () => sock.write("PING\r\n"));
    sock.on("data", (d) => {
      reply += d.toString();
      if (reply.includes("\r\n")) finish(reply.startsWith("+PONG"));
    });
    sock.on("error", () => finish(false));
  });
}
