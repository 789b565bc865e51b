// `bun run cluster` as a real process tree for tests that kill processes with SIGKILL.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePortRange } from "./infra.ts";
import { PORT_SPAN } from "../../src/cluster/args.ts";
import { METRICS_OFFSETS } from "../../src/shared/config.ts";

const REPO = join(import.meta.dir, "../..");

/** Lines of a child's output, kept, with a wait for the first line matching a predicate. */
export class Lines {
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

export interface Started {
  msg: string;
  role?: string;
  index?: number;
  service?: string;
  pid: number;
}

export const parseLogLine = (line: string): Started | undefined => {
  if (!line.startsWith("{")) return undefined;
  try {
    return JSON.parse(line);
  } catch {
    return undefined; // a partial or foreign line
  }
};

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export interface ProcessCluster {
  base: number;
  proc: Bun.Subprocess<"ignore", "pipe", "pipe">;
  out: Lines;
  err: Lines;
  ready: { api: string[]; connect: string[]; metrics: string[] };
  /** PID of the current process of a role instance (the latest "role started" line). */
  pid(role: string, index: number): number;
  /** Base URL of a role instance's internal ops port (/healthz, /readyz, /metrics). */
  opsUrl(role: keyof typeof METRICS_OFFSETS, index: number): string;
  /** Every PID it logged as started (roles and infrastructure). */
  startedPids(): number[];
  /** PID of the current process of an infrastructure service (redis, mysql, etcd). */
  servicePid(service: string): number;
  /** The cluster's --data-dir (redis/, mysql/, etcd/ inside). */
  dataDir: string;
  stop(): Promise<void>;
}

export async function spawnCluster(args: string[], env: Record<string, string> = {}, readyTimeoutMs = 60_000): Promise<ProcessCluster> {
  const dataDir = mkdtempSync(join(tmpdir(), "bunchat-cluster-test-"));
  const base = await freePortRange(PORT_SPAN + 1);
  const proc = Bun.spawn({
    cmd: [process.execPath, "src/bin/cluster.ts", "--base-port", String(base), "--data-dir", dataDir, ...args],
    cwd: REPO,
    // Niced password hashing can starve on the saturated shared test machine (see test/support/cluster.ts).
    env: { ...process.env, IM_HASH_NICE: "0", ...env },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const out = new Lines(proc.stdout);
  const err = new Lines(proc.stderr);
  const startedPids = () =>
    err.all.map(parseLogLine).filter((r): r is Started => !!r && (r.msg === "role started" || r.msg === "service started")).map((r) => r.pid);
  const stop = async () => {
    if (proc.exitCode === null) {
      proc.kill("SIGTERM");
      const done = await Promise.race([proc.exited.then(() => true), Bun.sleep(30_000).then(() => false)]);
      if (!done) proc.kill("SIGKILL");
    }
    for (const pid of startedPids()) if (isAlive(pid)) process.kill(pid, "SIGKILL");
    rmSync(dataDir, { recursive: true, force: true });
  };
  try {
    const line = await Promise.race([
      out.waitFor((l) => l.includes('"event":"ready"'), readyTimeoutMs, "the ready line"),
      proc.exited.then((code) => {
        throw new Error(`cluster exited with ${code} before ready; stderr:\n${err.all.slice(-40).join("\n")}`);
      }),
    ]);
    return {
      base,
      proc,
      out,
      err,
      ready: JSON.parse(line),
      pid: (role, index) => {
        const hits = err.all.map(parseLogLine).filter((r) => r?.msg === "role started" && r.role === role && r.index === index);
        if (!hits.length) throw new Error(`no ${role}-${index} started`);
        return hits[hits.length - 1]!.pid;
      },
      opsUrl: (role, index) => `http://127.0.0.1:${base + METRICS_OFFSETS[role] + index}`,
      startedPids,
      servicePid: (service) => {
        const hits = err.all.map(parseLogLine).filter((r) => r?.msg === "service started" && r.service === service);
        if (!hits.length) throw new Error(`no ${service} started`);
        return hits[hits.length - 1]!.pid;
      },
      dataDir,
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}
