// Shared benchmark plumbing: start `bun run cluster` as a real process tree, summarise
// latency histograms, print one JSON line per step.
import * as hdr from "hdr-histogram-js";
import { join } from "node:path";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";

export const ROOT = join(import.meta.dir, "..");

export interface Ready {
  api: string[];
  connect: string[];
  metrics: string[];
}

export interface RunningCluster extends Ready {
  stop(): Promise<void>;
}

/** Starts the local cluster (real redis, mariadb, etcd and every role as processes) in a temp data dir. */
export async function startCluster(args: string[], env: Record<string, string> = {}): Promise<RunningCluster> {
  const dataDir = mkdtempSync(join(tmpdir(), "bunchat-bench-"));
  const proc = Bun.spawn(["bun", "src/bin/cluster.ts", "--data-dir", dataDir, ...args], {
    cwd: ROOT,
    env: { ...process.env, IM_LOG_LEVEL: "warn", ...env },
    stdout: "pipe",
    stderr: process.env.BENCH_VERBOSE ? "inherit" : "ignore",
  });
  const reader = proc.stdout.getReader();
  let buf = "";
  const deadline = Date.now() + 120_000;
  for (;;) {
    const { value, done } = await reader.read();
    if (done || Date.now() > deadline) throw new Error("cluster exited or timed out before ready");
    buf += new TextDecoder().decode(value);
    const line = buf.split("\n").find((l) => l.includes('"event":"ready"'));
    if (line) {
      const ready = JSON.parse(line) as Ready;
      return {
        ...ready,
        stop: async () => {
          proc.kill("SIGTERM");
          await proc.exited;
          rmSync(dataDir, { recursive: true, force: true });
        },
      };
    }
  }
}

export function newHistogram(): hdr.Histogram {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: 3 });
}

/** p50/p90/p99/p999/max in ms from a histogram recorded in microseconds. */
export function summary(h: hdr.Histogram) {
  const ms = (v: number) => Math.round(v / 10) / 100;
  return {
    p50: ms(h.getValueAtPercentile(50)),
    p90: ms(h.getValueAtPercentile(90)),
    p99: ms(h.getValueAtPercentile(99)),
    p999: ms(h.getValueAtPercentile(99.9)),
    max: ms(h.maxValue),
    count: h.totalCount,
  };
}

export function report(line: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify(line) + "\n");
}

export function freeBasePort(): number {
  return 30000 + Math.floor(Math.random() * 200) * 100;
}
