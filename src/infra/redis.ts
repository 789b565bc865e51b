// redis-server with an append-only file and no RDB snapshots. appendfsync "everysec" (the default
// here) writes the AOF before answering and fsyncs once a second: a host crash may lose the last
// second. "always" makes Redis fsync the AOF before it answers, once per event-loop round, so one
// fsync covers every send script of the round (IM_ACK_MODE=fsync).
// The AOF is rewritten (a fork serialising the dataset) once it has doubled since the last
// rewrite and is at least REWRITE_MIN_SIZE. Redis's own minimum, 64mb, made a small dataset's AOF
// (~1.3 KB appended per message) rewrite every 4-9 s at 5,000 msgs/s; each rewrite cost the child
// 0.65 s of a core over ~1 s and the server copy-on-write page faults, hundreds of ms of p99 on a
// busy host (bench/journal/2026-12-01.md, "1 Dec 2026, 11:10-11:40: AOF rewrites"). The price of
// 256mb is replaying up to that much AOF after a restart (measured ~60 MB/s: ~3 s more than 64mb).
import { mkdir } from "node:fs/promises";
import { connect } from "node:net";
import { findBinary } from "./binaries.ts";
import type { ServiceSpec } from "./service.ts";

/** auto-aof-rewrite-min-size of the Redis we start (see above). */
const REWRITE_MIN_SIZE = "256mb";

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
      "--auto-aof-rewrite-min-size", REWRITE_MIN_SIZE,
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
