// What one lone Redis round trip costs the calling Bun process, by client: a call, its reply, then
// 1 ms idle (a timer), as each call is alone at a real cluster's moderate rates. Variants, in
// alternating rounds in one process against one redis-server:
//   timer     the 1 ms timer alone (subtract it from the rest)
//   net       PING over a node:net socket (what ioredis and grpc-js write through on Bun)
//   bunsock   PING over Bun.connect (Bun's native sockets)
//   ioredis   EVAL of a one-command script with an 800-byte argument (the size of a 2-message send batch)
//   bunredis  the same EVAL through Bun's built-in RedisClient
// Prints one JSON line per variant and round: CPU µs of this process per call (user, system).
// Usage: bun bench/redis-client.ts [--calls 3000] [--rounds 3]
//   (starts its own redis-server on a free port, stops it by pid)
import { RedisClient } from "bun";
import Redis from "ioredis";
import net from "node:net";
import { parseArgs } from "node:util";
import { startScratchRedis } from "./lib.ts";
import "../src/shared/tracing-channel.ts"; // as every role loads it (src/shared/redis.ts)

const { values: opt } = parseArgs({ options: { calls: { type: "string", default: "3000" }, rounds: { type: "string", default: "3" } } });
const calls = Number(opt.calls);
const { port, stop } = await startScratchRedis();
process.on("SIGINT", () => (stop(), process.exit(130)));
process.on("SIGTERM", () => (stop(), process.exit(143)));

try {
  const PING = Buffer.from("*1\r\n$4\r\nPING\r\n");
  const script = "return redis.call('SET', KEYS[1], ARGV[1])";
  const arg = "x".repeat(800);

  // One reply per PING, so the next data event is this call's answer.
  let answered: () => void = () => {};
  const sock = net.connect(port, "127.0.0.1");
  await new Promise((r) => sock.once("connect", r));
  sock.on("data", () => answered());
  const bunSock = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data: () => answered() } });
  const ior = new Redis(port, { enableAutoPipelining: false });
  const bun = new RedisClient(`redis://127.0.0.1:${port}`);
  await bun.connect();

  const variants: Record<string, () => Promise<unknown>> = {
    timer: async () => {},
    net: () => new Promise<void>((r) => ((answered = r), sock.write(PING))),
    bunsock: () => new Promise<void>((r) => ((answered = r), bunSock.write(PING))),
    ioredis: () => ior.eval(script, 1, "bench:k", arg),
    bunredis: () => bun.send("EVAL", [script, "1", "bench:k", arg]),
  };
  for (let round = 1; round <= Number(opt.rounds); round++)
    for (const [name, call] of Object.entries(variants)) {
      for (let i = 0; i < 200; i++) await call(); // warm
      const c0 = process.cpuUsage();
      for (let i = 0; i < calls; i++) {
        await call();
        await Bun.sleep(1);
      }
      const c = process.cpuUsage(c0);
      const per = (us: number) => Math.round((us / calls) * 10) / 10;
      console.log(JSON.stringify({ round, variant: name, calls, cpuUsPerCall: per(c.user + c.system), userUs: per(c.user), systemUs: per(c.system) }));
    }
  await ior.del("bench:k");
  ior.disconnect();
  bun.close();
  sock.destroy();
  bunSock.end();
} finally {
  stop();
}
