// Service discovery on a real etcd: registration, the etcd:// resolver following adds and
// removals, and an instance killed with SIGKILL dropping out within the lease TTL while calls
// keep succeeding through the others.
import { afterAll, expect, test } from "bun:test";
import { Discovery } from "../src/shared/discovery.ts";
import { etcdTarget } from "../src/shared/resolver.ts";
import { makeClient, serviceDefinition } from "../src/shared/rpc.ts";
import { createLogger } from "../src/shared/log.ts";
import { getInfra } from "./support/infra.ts";
import { eventually } from "./support/http.ts";

const TTL = 2;
const def = serviceDefinition("bunchat.test.Echo", ["whoami"]);
type Echo = { whoami(req: object): Promise<string> };
const children: ReturnType<typeof Bun.spawn>[] = [];
afterAll(() => {
  for (const c of children) c.kill("SIGKILL");
});

async function spawnInstance(endpoints: string[], prefix: string): Promise<{ id: string; proc: ReturnType<typeof Bun.spawn> }> {
  const proc = Bun.spawn(["bun", "test/fixtures/echo-instance.ts", endpoints.join(","), prefix, "echo", String(TTL)], { stdout: "pipe", stderr: "inherit" });
  children.push(proc);
  const { value } = await (proc.stdout as ReadableStream<Uint8Array>).getReader().read();
  return { id: new TextDecoder().decode(value).trim(), proc };
}

test("register, resolve round-robin, follow adds, drop a SIGKILLed instance within the lease TTL", async () => {
  const infra = await getInfra();
  const prefix = `/disc${process.pid}${Date.now()}`;
  const discovery = new Discovery({ endpoints: infra.etcdEndpoints, prefix, leaseTtlSec: TTL, log: createLogger({ level: "error" }) });
  const t = etcdTarget(discovery, "echo");
  const client = makeClient<Echo>(def, t.target, 2000);
  try {
    const a = await spawnInstance(infra.etcdEndpoints, prefix);
    const b = await spawnInstance(infra.etcdEndpoints, prefix);
    const watch = await discovery.watch("echo");
    expect([...watch.instances().keys()].sort()).toEqual([a.id, b.id].sort());

    // Round-robin: both instances answer.
    const seen = async (n: number) => {
      const s = new Set<string>();
      for (let i = 0; i < n; i++) s.add(await client.whoami({}));
      return s;
    };
    await eventually(async () => (await seen(10)).size === 2);

    // A new instance is picked up by the resolver.
    const c = await spawnInstance(infra.etcdEndpoints, prefix);
    await eventually(async () => (await seen(12)).has(c.id));

    // SIGKILL: no deregistration. Calls keep succeeding through the others at once...
    a.proc.kill("SIGKILL");
    await a.proc.exited;
    const killedAt = Date.now();
    for (let i = 0; i < 20; i++) expect([b.id, c.id]).toContain(await client.whoami({}, { retries: 1 }));
    // ...and the registration disappears when the lease expires.
    await eventually(() => !watch.instances().has(a.id), (TTL + 3) * 1000, "the killed instance to drop out");
    expect(Date.now() - killedAt).toBeLessThan((TTL + 3) * 1000);
    await watch.close();
  } finally {
    client.close();
    t.release();
    await discovery.close();
  }
}, 30_000);
