// `bun run cluster` under a parent that dies without forwarding a signal (as npm does on
// SIGTERM): the cluster notices, stops every process it started, and exits.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PORT_SPAN } from "../src/cluster/args.ts";
import { freePortRange } from "./support/infra.ts";
import { eventually } from "./support/http.ts";
import { isAlive, parseLogLine, type Started } from "./support/process-cluster.ts";

const REPO = join(import.meta.dir, "..");
const dir = mkdtempSync(join(tmpdir(), "bunchat-parent-test-"));
const logFile = join(dir, "cluster.log");
let clusterPid = 0;
const started = () =>
  readFileSync(logFile, "utf8")
    .split("\n")
    .map(parseLogLine)
    .filter((r): r is Started => !!r && (r.msg === "role started" || r.msg === "service started"))
    .map((r) => r.pid);

afterAll(() => {
  // Only if the test failed: stop what this test started, by pid.
  for (const pid of [clusterPid, ...started()]) if (pid && isAlive(pid)) process.kill(pid, "SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});

test("the cluster stops everything it started when its parent is killed with SIGKILL", async () => {
  const base = await freePortRange(PORT_SPAN + 1);
  const dataDir = join(dir, "data");
  // The parent: a shell that starts the cluster (output to a file, as a terminal would outlive
  // the parent), prints its pid and waits, like `npm start`.
  const parent = Bun.spawn({
    cmd: ["sh", "-c", `"$0" src/bin/cluster.ts --base-port ${base} --data-dir "$1" >"$2" 2>&1 & echo $!; wait`, process.execPath, dataDir, logFile],
    cwd: REPO,
    env: { ...process.env, IM_HASH_NICE: "0" },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "inherit",
  });
  const reader = parent.stdout.getReader();
  const first = new TextDecoder().decode((await reader.read()).value);
  reader.releaseLock();
  clusterPid = Number(first.trim());
  expect(clusterPid).toBeGreaterThan(0);
  await eventually(() => readFileSync(logFile, "utf8").includes('"event":"ready"'), 60_000, "the ready line");
  const pids = started();
  expect(pids.length).toBeGreaterThanOrEqual(3 + 4); // redis, mysql, etcd; api, logic, task, connect
  for (const pid of [clusterPid, ...pids]) expect({ pid, alive: isAlive(pid) }).toEqual({ pid, alive: true });

  parent.kill("SIGKILL");
  await parent.exited;
  const t0 = Date.now();
  await eventually(() => [clusterPid, ...pids].every((pid) => !isAlive(pid)), 15_000, "cluster and every child gone");
  const log = readFileSync(logFile, "utf8");
  expect(log).toContain("parent process gone");
  expect(log).toContain('"msg":"stopped"');
  console.log(`all ${pids.length + 1} processes gone ${Date.now() - t0} ms after the parent's SIGKILL`);
}, 90_000);
