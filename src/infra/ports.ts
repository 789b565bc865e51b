// Port helpers for local infrastructure and tests. All checks are on 127.0.0.1, where every
// local service listens.
import { createServer } from "node:net";

function listen(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once("error", () => resolve(undefined));
    srv.listen({ port, host: "127.0.0.1", exclusive: true }, () => {
      const addr = srv.address();
      const got = typeof addr === "object" && addr ? addr.port : undefined;
      srv.close(() => resolve(got));
    });
  });
}

/** A port nobody listens on right now (the OS picks it). Another process may take it before we do. */
export async function freePort(): Promise<number> {
  const port = await listen(0);
  if (!port) throw new Error("could not find a free port on 127.0.0.1");
  return port;
}

export async function isPortFree(port: number): Promise<boolean> {
  return (await listen(port)) === port;
}

/**
 * A base port such that base .. base+count-1 are all free. Searched below the Linux ephemeral
 * range (32768+), so outgoing connections do not take the ports meanwhile.
 */
export async function freePortRange(count: number, min = 20_000, max = 32_000): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = min + Math.floor(Math.random() * (max - min - count));
    let ok = true;
    for (let p = base; p < base + count && ok; p++) ok = await isPortFree(p);
    if (ok) return base;
  }
  throw new Error(`no ${count} consecutive free ports found in ${min}..${max}`);
}
