// `bun run cluster` under a parent that goes away: killed with SIGKILL (nothing can forward a
// signal), or `npm start` sent SIGTERM (npm forwards it to its one child, the cluster). Either
// way the cluster stops every process it started and exits.
import { afterEach, expect, test } from "bun:test";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PORT_SPAN } from "../src/cluster/args.ts";
import { freePortRange } from "./support/infra.ts";
import { eventually } from "./support/http.ts";
import { isAlive, parseLogLine, type Started } from "./support/process-cluster.ts";

const REPO = join(import.meta.dir, "..");
let dir = "";
let clusterPid = 0;
let parentProc: Bun.Subprocess | undefined;
const logFile = () => join(dir, "cluster.log");
const log = () => readFileSync(logFile(), "utf8");
const started = () =>
  log()
    .split("\n")
    .map(parseLogLine)
    .filter((r): r is Started => !!r && (r.msg === "role started" || r.msg === "service started"))
    .map((r) => r.pid);
/** The parent of a process, from /proc (Linux). */
const ppidOf = (pid: number) => Number(readFileSync(`/proc/${pid}/stat`, "utf8").replace(/^.*\) /s, "").split(" ")[1]);

afterEach(async () => {
  // Only if a test failed: stop what it started, by pid (the cluster first, which stops its children).
  parentProc?.kill("SIGKILL");
  if (clusterPid && isAlive(clusterPid)) {
    process.kill(clusterPid, "SIGTERM");
    await eventually(() => !isAlive(clusterPid), 20_000, "cluster exit").catch(() => undefined);
  }
  for (const pid of [clusterPid, ...started()]) if (pid && isAlive(pid)) process.kill(pid, "SIGKILL");
  rmSync(dir, { recursive: true, force: true });
  clusterPid = 0;
  parentProc = undefined;
});

/** Starts cmd (which starts the cluster, output to the log file), waits for ready, then sends the parent `signal`. */
async function stopsWithParent(cmd: (base: number, dataDir: string) => string[], signal: "SIGKILL" | "SIGTERM", expectInLog: string) {
  dir = mkdtempSync(join(tmpdir(), "bunchat-parent-test-"));
  const base = await freePortRange(PORT_SPAN + 1);
  const out = openSync(logFile(), "a"); // one file for stdout and stderr, appended to
  const parent = (parentProc = Bun.spawn({
    cmd: cmd(base, join(dir, "data")),
    cwd: REPO,
    env: { ...process.env, IM_HASH_NICE: "0" },
    stdin: "ignore",
    stdout: out,
    stderr: out,
  }));
  closeSync(out);
  await eventually(() => log().includes('"event":"ready"'), 60_000, "the ready line");
  const pids = started();
  clusterPid = ppidOf(pids[0]!);
  expect(pids.length).toBeGreaterThanOrEqual(3 + 4); // redis, mysql, etcd; api, logic, task, connect
  expect(clusterPid).not.toBe(parent.pid);
  for (const pid of [clusterPid, ...pids]) expect({ pid, alive: isAlive(pid) }).toEqual({ pid, alive: true });

  parent.kill(signal);
  await parent.exited;
  const t0 = Date.now();
  await eventually(() => [clusterPid, ...pids].every((pid) => !isAlive(pid)), 15_000, "cluster and every child gone");
  expect(log()).toContain(expectInLog);
  expect(log()).toContain('"msg":"stopped"');
  console.log(`${signal} to the parent: all ${pids.length + 1} processes gone ${Date.now() - t0} ms after it exited`);
}

test("the cluster stops everything it started when its parent is killed with SIGKILL", async () => {
  // The parent: a shell that starts the cluster in the background and waits, like a launcher.
  await stopsWithParent(
    (base, dataDir) => ["sh", "-c", `"$0" src/bin/cluster.ts --base-port ${base} --data-dir "$1" & wait`, process.execPath, dataDir],
    "SIGKILL",
    "parent process gone",
  );
}, 90_000);

test("npm start stops everything when npm gets SIGTERM", async () => {
  await stopsWithParent(
    (base, dataDir) => ["npm", "start", "--", "--base-port", String(base), "--data-dir", dataDir],
    "SIGTERM",
    '"signal":"SIGTERM"',
  );
}, 90_000);
