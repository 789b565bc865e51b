// `bun run cluster` as a real process: ready line, health of every instance, restart of a
// killed role, and a clean stop on SIGTERM that leaves none of its processes behind.
import { afterAll, describe, expect, test } from "bun:test";
import { eventually } from "./support/http.ts";
import { isAlive, parseLogLine as parse, spawnCluster, type ProcessCluster, type Started } from "./support/process-cluster.ts";

async function status(url: string): Promise<number> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
    await res.arrayBuffer();
    return res.status;
  } catch {
    return 0;
  }
}


describe("bun run cluster", () => {
  let c: ProcessCluster;
  let ready: ProcessCluster["ready"];
  let base: number;

  afterAll(() => c?.stop());

  test("prints the ready line within 30 s", async () => {
    const t0 = Date.now();
    c = await spawnCluster(["--logic", "2", "--connect", "2"], {}, 30_000);
    expect(Date.now() - t0).toBeLessThan(30_000);
    ({ ready, base } = c);
    expect(c.out.all.length).toBe(1); // nothing else on stdout
    expect(Object.keys(c.ready).sort()).toEqual(["api", "connect", "event", "metrics"]);
    expect(ready.api).toEqual([`http://127.0.0.1:${base + 10}`]);
    expect(ready.connect).toEqual([`ws://127.0.0.1:${base + 40}/ws`, `ws://127.0.0.1:${base + 41}/ws`]);
    expect(ready.metrics.length).toBe(1 + 2 + 1 + 2);
  }, 40_000);

  test("every instance answers /healthz and /metrics", async () => {
    for (const url of ready.metrics) {
      expect(await status(`${url}/healthz`)).toBe(200);
      const res = await fetch(`${url}/metrics`);
      expect(res.status).toBe(200);
      expect(await res.text()).toContain("# TYPE");
    }
  });

  test("a role process killed with SIGKILL is restarted", async () => {
    const isLogic1 = (r?: Started) => r?.msg === "role started" && r.role === "logic" && r.index === 1;
    const err = c.err;
    const first = parse(await err.waitFor((l) => isLogic1(parse(l)), 1000, "logic-1 started"))!;
    const from = err.all.length;
    process.kill(first.pid, "SIGKILL");
    const again = parse(await err.waitFor((l) => isLogic1(parse(l)), 15_000, "logic-1 restarted", from))!;
    expect(again.pid).not.toBe(first.pid);
    expect(isAlive(first.pid)).toBe(false);
    const url = `http://127.0.0.1:${base + 31}/healthz`;
    expect(ready.metrics).toContain(`http://127.0.0.1:${base + 31}`);
    await eventually(async () => (await status(url)) === 200, 30_000, "restarted logic-1 healthy");
  }, 50_000);

  test("SIGTERM stops every process it started and exits 0", async () => {
    const pids = c.startedPids();
    const proc = c.proc;
    expect(pids.length).toBeGreaterThanOrEqual(3 + 6 + 1); // infra, roles, the restart
    proc.kill("SIGTERM");
    const code = await Promise.race([proc.exited, Bun.sleep(40_000).then(() => "still running")]);
    expect(code).toBe(0);
    for (const pid of pids) expect({ pid, alive: isAlive(pid) }).toEqual({ pid, alive: false });
  }, 50_000);
});
