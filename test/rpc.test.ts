// The gRPC transport of src/shared/rpc.ts (every service over long-lived bidirectional streams):
// replies and errors, deadlines, and what callers see when the server stops or dies mid-call.
import { afterEach, expect, test } from "bun:test";
import * as grpc from "@grpc/grpc-js";
import type { Server } from "@grpc/grpc-js";
import { addService, makeClient, serviceDefinition, startServer, stopServer } from "../src/shared/rpc.ts";
import { AppError } from "../src/shared/errors.ts";
import { createLogger } from "../src/shared/log.ts";

const svc = serviceDefinition("bunchat.test.Rpc", ["echo", "fail", "slow", "never", "throwSync", "unencodable"]);
type Rpc = {
  throwSync(req: object): Promise<never>;
  unencodable(req: object): Promise<unknown>;
  echo(req: { x: unknown }): Promise<unknown>;
  fail(req: object): Promise<never>;
  slow(req: { ms: number }): Promise<string>;
  never(req: object): Promise<never>;
};
const log = createLogger({ level: "error" });
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function start(): Promise<{ server: Server; port: number; started: number[] }> {
  const started: number[] = [];
  const impl = {
    echo: async (r: { x: unknown }) => r.x,
    fail: async () => {
      throw new AppError("FORBIDDEN", "no");
    },
    slow: async (r: { ms: number }) => {
      started.push(Date.now());
      await Bun.sleep(r.ms);
      return "done";
    },
    never: () => new Promise<never>(() => {}),
    throwSync: () => {
      throw new AppError("BAD_REQUEST", "thrown before any promise");
    },
    unencodable: async () => 2n ** 100n,
  };
  const { server, port } = await startServer((s) => addService(s, svc, impl, log), "127.0.0.1", 0);
  cleanups.push(() => server.forceShutdown());
  return { server, port, started };
}

function client(port: number, deadlineMs = 2000) {
  const c = makeClient<Rpc>(svc, `127.0.0.1:${port}`, deadlineMs);
  cleanups.push(() => c.close());
  return c;
}

test("replies, AppErrors and many concurrent calls over the lanes", async () => {
  const { port } = await start();
  const c = client(port);
  expect(await c.echo({ x: { a: [1, "b"] } })).toEqual({ a: [1, "b"] });
  expect(await c.echo({ x: null })).toBeNull();
  const err = await c.fail({}).catch((e) => e);
  expect(err).toBeInstanceOf(AppError);
  expect(err.code).toBe("FORBIDDEN");
  const many = await Promise.all(Array.from({ length: 500 }, (_, i) => c.echo({ x: i })));
  expect(many).toEqual(Array.from({ length: 500 }, (_, i) => i));
});

test("a call past its deadline fails UNAVAILABLE; the client keeps working", async () => {
  const { port } = await start();
  const c = client(port, 300);
  const t0 = Date.now();
  const err = await c.never({}).catch((e) => e);
  expect(err.code).toBe("UNAVAILABLE");
  expect(Date.now() - t0).toBeLessThan(1500);
  for (let i = 0; i < 8; i++) expect(await c.echo({ x: i })).toBe(i);
});

test("stopServer answers the calls in flight, then callers fail fast", async () => {
  const { server, port, started } = await start();
  const c = client(port, 5000);
  await c.echo({ x: 1 });
  const inFlight = c.slow({ ms: 300 });
  while (!started.length) await Bun.sleep(5);
  const stopped = stopServer(server, 3000);
  expect(await inFlight).toBe("done");
  await stopped;
  const t0 = Date.now();
  const err = (await c.echo({ x: 2 }).catch((e) => e)) as AppError;
  expect(err.code).toBe("UNAVAILABLE");
  expect(Date.now() - t0).toBeLessThan(2000);
});

test("a server gone mid-call fails the call UNAVAILABLE at once, not at its deadline", async () => {
  const { server, port, started } = await start();
  const c = client(port, 10_000);
  const call = c.slow({ ms: 5000 }).catch((e) => e);
  while (!started.length) await Bun.sleep(5);
  const t0 = Date.now();
  server.forceShutdown();
  const err = await call;
  expect(err.code).toBe("UNAVAILABLE");
  expect(Date.now() - t0).toBeLessThan(2000);
});

test("a method that throws synchronously, a reply that cannot be encoded and a frame that is not an object end nothing", async () => {
  const { port } = await start();
  const c = client(port);
  await expect(c.throwSync({})).rejects.toMatchObject({ code: "BAD_REQUEST" });
  await expect(c.unencodable({})).rejects.toBeInstanceOf(AppError);
  // A raw peer writing frames that are not {n, m, req}.
  const Ctor = grpc.makeGenericClientConstructor(svc.def, "svc");
  const raw = new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as { pipe(): grpc.ClientDuplexStream<unknown, unknown>; close(): void };
  cleanups.push(() => raw.close());
  const pipe = raw.pipe();
  pipe.on("error", () => undefined);
  for (const f of [5, "x", [], true, { n: 1 }, { n: 2, m: "echo" }]) pipe.write(f);
  pipe.end();
  await Bun.sleep(100);
  expect(await c.echo({ x: "still up" })).toBe("still up");
});
