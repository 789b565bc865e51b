// redis-server with an append-only file and no RDB snapshots. appendfsync "everysec" (the default
// here) writes the AOF before answering and fsyncs once a second: a host crash may lose the last
// second. "always" makes Redis fsync the AOF before it answers, once per event-loop round, so one
// fsync covers every send script of the round (IM_ACK_MODE=fsync).
import { mkdir } from "node:fs/promises";
import { connect } from "node:net";
import { findBinary } from "./binaries.ts";
import type { ServiceSpec } from "./service.ts";

export function redisSpec(opts: { port: number; dir: string; appendfsync?: "always" | "everysec" }): ServiceSpec {
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
      "--appendfsync", opts.appendfsync ?? "everysec",
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
