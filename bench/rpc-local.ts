// CPU per call of the in-process client (localClient) against the gRPC one (makeClient over
// loopback, server in the same process, so the process's CPU covers both sides of the call), for
// a push-like request: `--events` message events of `--body-bytes`, `--concurrency` calls in
// flight. Prints one JSON line per client and round (µs of process CPU per call, calls/s).
// Usage: bun bench/rpc-local.ts [--calls 20000] [--events 10] [--body-bytes 64] [--concurrency 1,16] [--rounds 2]
import { parseArgs } from "node:util";
import { addService, localClient, makeClient, serviceDefinition, startServer, type Client } from "../src/shared/rpc.ts";
import { createLogger } from "../src/shared/log.ts";
import { loadavg, report } from "./lib.ts";

const { values: o } = parseArgs({
  options: {
    calls: { type: "string", default: "20000" },
    events: { type: "string", default: "10" },
    "body-bytes": { type: "string", default: "64" },
    concurrency: { type: "string", default: "1,16" },
    rounds: { type: "string", default: "2" },
  },
});
const svc = serviceDefinition("bunchat.bench.Push", ["push"]);
type Push = { push(req: { events: unknown[] }): Promise<null> };
const log = createLogger({ level: "error" });
let seen = 0;
const impl: Push = {
  push: async (req) => {
    seen += req.events.length;
    return null;
  },
};
const { server, port } = await startServer((s) => addService(s, svc, impl, log), "127.0.0.1", 0);
const clients: Record<string, Client<Push>> = {
  grpc: makeClient<Push>(svc, `127.0.0.1:${port}`),
  local: localClient<Push>(svc, impl, log),
};
const body = "x".repeat(Number(o["body-bytes"]));
const req = {
  events: Array.from({ length: Number(o.events) }, (_, i) => ({
    t: "m",
    room: "r42",
    msg: { id: String(7_000_000_000_000_000 + i), conv: "room:r42", seq: i, from: { userId: 7, userName: "alice" }, body, ts: Date.now() },
  })),
};

async function run(c: Client<Push>, calls: number, concurrency: number): Promise<{ usPerCall: number; callsPerSec: number }> {
  let next = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next++ < calls) await c.push(req);
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return { usPerCall: Math.round(((cpu.user + cpu.system) / calls) * 10) / 10, callsPerSec: Math.round(calls / secs) };
}

for (const [name, c] of Object.entries(clients)) await run(c, 2000, 4); // warm-up
for (let round = 1; round <= Number(o.rounds); round++) {
  for (const concurrency of String(o.concurrency).split(",").map(Number)) {
    for (const [name, c] of Object.entries(clients)) {
      const r = await run(c, Number(o.calls), concurrency);
      report({ client: name, round, concurrency, events: Number(o.events), bodyBytes: Number(o["body-bytes"]), ...r, loadavg: loadavg() });
    }
  }
}
for (const c of Object.values(clients)) c.close();
server.forceShutdown();
if (seen === 0) throw new Error("no call reached the service");
