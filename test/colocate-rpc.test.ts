// localClient (src/shared/rpc.ts), the in-process Client<T> of co-located roles: every case runs
// against it and against makeClient over a real gRPC server with the same implementation, and
// both must answer alike (values, AppErrors unchanged, INTERNAL for other errors, deadlines).
import { afterEach, expect, test } from "bun:test";
import { addService, localClient, makeClient, serviceDefinition, startServer, type Client } from "../src/shared/rpc.ts";
import { AppError } from "../src/shared/errors.ts";
import { createLogger } from "../src/shared/log.ts";

const svc = serviceDefinition("bunchat.test.Colocate", ["echo", "nothing", "fail", "limited", "throwSync", "bug", "never", "flaky"]);
type Rpc = {
  echo(req: { x: unknown }): Promise<unknown>;
  nothing(req: object): Promise<undefined>;
  fail(req: object): Promise<never>;
  limited(req: object): Promise<never>;
  throwSync(req: object): Promise<never>;
  bug(req: object): Promise<never>;
  never(req: object): Promise<never>;
  flaky(req: object): Promise<string>;
};
const log = createLogger({ level: "error" });
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

function impl() {
  let flakyCalls = 0;
  return {
    calls: () => flakyCalls,
    rpc: {
      echo: async (r: { x: unknown }) => r.x,
      nothing: async () => undefined,
      fail: async () => {
        throw new AppError("FORBIDDEN", "no");
      },
      limited: async () => {
        throw new AppError("RATE_LIMITED", "slow down", 7);
      },
      throwSync: () => {
        throw new AppError("BAD_REQUEST", "thrown before any promise");
      },
      bug: async () => {
        throw new TypeError("secret internals");
      },
      never: () => new Promise<never>(() => {}),
      flaky: async () => {
        if (++flakyCalls < 3) throw new AppError("UNAVAILABLE", "try again");
        return "third time";
      },
    } satisfies Rpc,
  };
}

async function both(deadlineMs = 2000): Promise<{ name: string; c: Client<Rpc>; calls: () => number }[]> {
  const remote = impl();
  const { server, port } = await startServer((s) => addService(s, svc, remote.rpc, log), "127.0.0.1", 0);
  cleanups.push(() => server.forceShutdown());
  const grpcClient = makeClient<Rpc>(svc, `127.0.0.1:${port}`, deadlineMs);
  const local = impl();
  const inProcess = localClient<Rpc>(svc, local.rpc, log, deadlineMs);
  cleanups.push(() => grpcClient.close(), () => inProcess.close());
  return [
    { name: "grpc", c: grpcClient, calls: remote.calls },
    { name: "local", c: inProcess, calls: local.calls },
  ];
}

const outcome = (p: Promise<unknown>) =>
  p.then(
    (ok) => ({ ok }),
    (e) => ({ err: e instanceof AppError ? { type: "AppError", code: e.code, message: e.message, retryAfterSec: e.retryAfterSec } : String(e) }),
  );

test("values, null for undefined, AppErrors with their code, message and retry-after, INTERNAL for other errors: alike over gRPC and in-process", async () => {
  const clients = await both();
  const results = [];
  for (const { c } of clients) {
    results.push([
      await outcome(c.echo({ x: { a: [1, "b"], n: null } })),
      await outcome(c.nothing({})),
      await outcome(c.fail({})),
      await outcome(c.limited({})),
      await outcome(c.throwSync({})),
      await outcome(c.bug({})),
    ]);
  }
  expect(results[1]).toEqual(results[0]);
  expect(results[1]).toEqual([
    { ok: { a: [1, "b"], n: null } },
    { ok: null },
    { err: { type: "AppError", code: "FORBIDDEN", message: "no", retryAfterSec: undefined } },
    { err: { type: "AppError", code: "RATE_LIMITED", message: "slow down", retryAfterSec: 7 } },
    { err: { type: "AppError", code: "BAD_REQUEST", message: "thrown before any promise", retryAfterSec: undefined } },
    { err: { type: "AppError", code: "INTERNAL", message: "internal error", retryAfterSec: undefined } },
  ]);
});

test("a call not answered by its deadline fails UNAVAILABLE, per call or by the client's default", async () => {
  for (const { name, c } of await both(400)) {
    const t0 = Date.now();
    const byOpt = await outcome(c.never({}, { deadlineMs: 200 }));
    const byDefault = await outcome(c.never({}));
    const took = Date.now() - t0;
    expect({ name, byOpt }).toEqual({ name, byOpt: { err: { type: "AppError", code: "UNAVAILABLE", message: "deadline exceeded", retryAfterSec: undefined } } });
    expect((byDefault as { err: { code: string } }).err.code).toBe("UNAVAILABLE");
    // 200 + 400 ms of deadlines, swept every 100 ms; generous upper bound for a loaded machine.
    expect(took).toBeGreaterThanOrEqual(550);
    expect(took).toBeLessThan(10_000);
    // The client still works after a deadline.
    expect(await c.echo({ x: 1 })).toBe(1);
  }
});

test("retries repeat an UNAVAILABLE call; without them the first failure is returned", async () => {
  for (const { c, calls } of await both()) {
    expect((await outcome(c.flaky({}))) as unknown).toEqual({ err: { type: "AppError", code: "UNAVAILABLE", message: "try again", retryAfterSec: undefined } });
    expect(await c.flaky({}, { retries: 2 })).toBe("third time");
    expect(calls()).toBe(3);
  }
});

test("in-process: close fails waiting and later calls UNAVAILABLE; a missing method is refused at creation", async () => {
  const c = localClient<Rpc>(svc, impl().rpc, log);
  const waiting = outcome(c.never({}));
  c.close();
  expect(((await waiting) as { err: { code: string } }).err.code).toBe("UNAVAILABLE");
  expect(((await outcome(c.echo({ x: 1 }))) as { err: { code: string } }).err.code).toBe("UNAVAILABLE");
  expect(() => localClient(svc, { echo: async () => 1 } as never, log)).toThrow(/not implemented/);
});

test("bun run node refuses unknown, repeated or missing roles with exit 2 and the usage", async () => {
  for (const args of [["--roles", "logic,bogus"], ["--roles", "logic,logic"], [], ["--roles", "logic", "--index", "x"]]) {
    const p = Bun.spawn([process.execPath, "src/bin/node.ts", ...args], { cwd: `${import.meta.dir}/..`, stdout: "ignore", stderr: "pipe" });
    const err = await new Response(p.stderr).text();
    expect(await p.exited).toBe(2);
    expect(err).toContain("usage: bun run node --roles");
  }
});
