// `bun run cluster` as a real process: ready line, health of every instance, restart of a
// killed role, and a clean stop on SIGTERM that leaves none of its processes behind.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePortRange } from "./support/infra.ts";

const REPO = join(import.meta.dir, "..");

/** Lines of a child's output, kept, with a wait for the first line matching a predicate. */
class Lines {
  readonly all: string[] = [];
  private waiters = new Set<() => void>();

  constructor(stream: ReadableStream<Uint8Array>) {
    void this.pump(stream);
  }

  private async pump(stream: ReadableStream<Uint8Array>) {
    const decoder = new TextDecoder();
    let buf = "";
    for await (const chunk of stream) {
      buf += decoder.decode(chunk, { stream: true });
      const parts = buf.split("\n");
      buf = parts.pop()!;
      this.all.push(...parts);
      for (const w of this.waiters) w();
    }
  }

  async waitFor(pred: (line: string) => boolean, timeoutMs: number, what: string, from = 0): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.all.slice(from).find(pred);
      if (hit !== undefined) return hit;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}; last output:\n${this.all.slice(-40).join("\n")}`);
      await new Promise<void>((resolve) => {
        const wake = () => {
          this.waiters.delete(wake);
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(wake, left);
        this.waiters.add(wake);
      });
    }
  }
}

interface Started {
  msg: string;
  role?: string;
  index?: number;
  service?: string;
  pid: number;
}
const parse = (line: string): Started | undefined => {
  if (!line.startsWith("{")) return undefined;
  try {
    return JSON.parse(line);
  } catch {
    return undefined; // a partial or foreign line
  }
};

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function status(url: string): Promise<number> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
    await res.arrayBuffer();
    return res.status;
  } catch {
    return 0;
  }
}

async function eventually(check: () => Promise<boolean>, timeoutMs: number, what: string) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await Bun.sleep(100);
  }
}

describe("bun run cluster", () => {
  const dataDir = mkdtempSync(join(tmpdir(), "bunchat-cluster-test-"));
  let proc: Bun.Subprocess<"ignore", "pipe", "pipe">;
  let out: Lines;
  let err: Lines;
  let ready: { api: string[]; connect: string[]; metrics: string[] };
  let base: number;

  const startedPids = () =>
    err.all.map(parse).filter((r): r is Started => !!r && (r.msg === "role started" || r.msg === "service started")).map((r) => r.pid);

  afterAll(async () => {
    if (proc && proc.exitCode === null) {
      proc.kill("SIGTERM");
      const done = await Promise.race([proc.exited.then(() => true), Bun.sleep(30_000).then(() => false)]);
      if (!done) proc.kill("SIGKILL");
    }
    if (err) for (const pid of startedPids()) if (isAlive(pid)) process.kill(pid, "SIGKILL");
    rmSync(dataDir, { recursive: true, force: true });
  });

  test("prints the ready line within 30 s", async () => {
    base = await freePortRange(71);
    const t0 = Date.now();
    proc = Bun.spawn({
      cmd: [process.execPath, "src/bin/cluster.ts", "--base-port", String(base), "--logic", "2", "--connect", "2", "--data-dir", dataDir],
      cwd: REPO,
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    });
    out = new Lines(proc.stdout);
    err = new Lines(proc.stderr);
    const line = await Promise.race([
      out.waitFor((l) => l.includes('"event":"ready"'), 30_000, "the ready line"),
      proc.exited.then((code) => {
        throw new Error(`cluster exited with ${code} before ready; stderr:\n${err.all.slice(-40).join("\n")}`);
      }),
    ]);
    expect(Date.now() - t0).toBeLessThan(30_000);
    expect(out.all.length).toBe(1); // nothing else on stdout
    const parsed = JSON.parse(line);
    expect(Object.keys(parsed).sort()).toEqual(["api", "connect", "event", "metrics"]);
    ready = parsed;
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
    const pids = startedPids();
    expect(pids.length).toBeGreaterThanOrEqual(3 + 6 + 1); // infra, roles, the restart
    proc.kill("SIGTERM");
    const code = await Promise.race([proc.exited, Bun.sleep(40_000).then(() => "still running")]);
    expect(code).toBe(0);
    for (const pid of pids) expect({ pid, alive: isAlive(pid) }).toEqual({ pid, alive: false });
  }, 50_000);
});
