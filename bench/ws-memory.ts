// Memory per idle WebSocket: N authenticated connections on ONE connect instance of
// `bun run cluster` (1 api, 1 logic, 1 task, 1 connect), each joined to a room of --room-size,
// heartbeats on (the server pings every IM_PING_INTERVAL_MS, 5 s here instead of 25 s, and closes
// a connection silent for IM_IDLE_TIMEOUT_MS, 12 s here instead of 60 s), then idle for --idle
// seconds (20): a client whose pongs did not count would be closed with 4408 within the window. Reported: the connect process's RSS before the clients and after the idle
// window, and (after − before) / N. In the same run, the same clients against the bare Bun
// pub/sub server of bench/messaging.ts (bench/baseline-pubsub.ts: one process, subscribe per
// join, Bun's own pings).
//
// File descriptors: the script raises its own RLIMIT_NOFILE with prlimit(1) (the children it
// spawns inherit it). Source ports: one client process holds N sockets to one server port; the
// clients spread over --hosts destination addresses 127.0.0.1..127.0.0.k (both servers listen
// on every address) so that the 4-tuples never run out of ephemeral ports.
// Usage: bun bench/ws-memory.ts [--clients 20000] [--room-size 100] [--idle 15] [--target both|baseline|bunchat]
import { parseArgs } from "node:util";
import { readFileSync } from "node:fs";
import { freeBasePort, loadavg, processTree, report, ROOT, startCluster } from "./lib.ts";
import { register } from "./messaging-targets.ts";

const { values: o } = parseArgs({
  options: {
    clients: { type: "string", default: "20000" },
    "room-size": { type: "string", default: "100" },
    users: { type: "string", default: "100" },
    idle: { type: "string", default: "20" },
    hosts: { type: "string", default: "4" },
    concurrency: { type: "string", default: "64" },
    target: { type: "string", default: "both" },
  },
});
let N = Number(o.clients);
const ROOM_SIZE = Number(o["room-size"]);
const USERS = Number(o.users);
const HOSTS = Number(o.hosts);
const runId = Date.now().toString(36);

/**
 * Raises this process's open-file limit to `want` (needs CAP_SYS_RESOURCE above the hard limit),
 * else the soft limit to the hard one; returns the soft limit in force.
 */
function raiseNoFile(want: number): number {
  const get = () => Bun.spawnSync(["prlimit", `--pid=${process.pid}`, "--nofile", "--raw", "--noheadings"]).stdout.toString().trim().split(/\s+/).slice(-3, -1).map(Number);
  const r = Bun.spawnSync(["prlimit", `--pid=${process.pid}`, `--nofile=${want}:${want}`]);
  if (r.exitCode !== 0) Bun.spawnSync(["prlimit", `--pid=${process.pid}`, `--nofile=${get()[1]}:${get()[1]}`]);
  const [soft, hard] = get();
  report({ event: "nofile", wanted: want, raised: r.exitCode === 0, soft, hard, error: r.exitCode ? r.stderr.toString().trim() : undefined });
  return soft;
}

/** Resident set size of a process in KiB (VmRSS of /proc/<pid>/status). */
function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) : 0;
}

const cleanups: (() => Promise<void>)[] = [];
async function cleanup() {
  while (cleanups.length) await cleanups.pop()!().catch((e) => process.stderr.write(`cleanup: ${e}\n`));
}
for (const sig of ["SIGINT", "SIGTERM"] as const) process.on(sig, () => void cleanup().finally(() => process.exit(130)));

interface Server {
  name: string;
  /** the one process holding the connections */
  pid: number;
  url(i: number): string;
}

async function startBaseline(): Promise<Server> {
  const proc = Bun.spawn(["bun", "bench/baseline-pubsub.ts", "0", "0.0.0.0"], { cwd: ROOT, stdout: "pipe", stderr: "inherit" });
  cleanups.push(async () => {
    proc.kill("SIGTERM");
    await proc.exited;
  });
  const { value } = await proc.stdout.getReader().read();
  const port = Number(new TextDecoder().decode(value).trim());
  return { name: "baseline", pid: proc.pid, url: (i) => `ws://127.0.0.${1 + (i % HOSTS)}:${port}/ws?token=u${(i % USERS) + 1}` };
}

async function startBunchat(): Promise<Server> {
  const env = { IM_PING_INTERVAL_MS: "5000", IM_IDLE_TIMEOUT_MS: "12000", IM_RATE_LIMIT: "100000", IM_RATE_BURST: "100000" };
  const cluster = await startCluster(["--base-port", String(freeBasePort()), "--api", "1", "--logic", "1", "--task", "1", "--connect", "1"], env);
  cleanups.push(() => cluster.stop());
  const tokens = await register(cluster.api, USERS, `m${runId}`, 3);
  const connectPid = [...processTree(cluster.pid)].find(([, label]) => label === "connect")?.[0];
  if (!connectPid) throw new Error("no connect process in the cluster's tree");
  const u = new URL(cluster.connect[0]);
  report({ event: "setup", target: "bunchat", env, connect: cluster.connect[0] });
  return {
    name: "bunchat",
    pid: connectPid,
    url: (i) => `ws://127.0.0.${1 + (i % HOSTS)}:${u.port}${u.pathname}?token=${encodeURIComponent(tokens[i % USERS])}`,
  };
}

/** Opens client i and waits for its `joined`; resolves the socket. */
function openJoined(url: string, room: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const timer = setTimeout(() => reject(new Error("no joined within 30 s")), 30_000);
    ws.onopen = () => ws.send(JSON.stringify({ op: "join", room, ref: "j" }));
    ws.onmessage = (ev) => {
      const f = JSON.parse(String(ev.data));
      if (f.op === "joined") {
        clearTimeout(timer);
        ws.onmessage = null;
        resolve(ws);
      } else if (f.op === "error") reject(new Error(`${f.code}: ${f.message}`));
    };
    ws.onerror = () => reject(new Error("WebSocket error"));
    ws.onclose = (ev) => reject(new Error(`closed ${ev.code}`));
  });
}

async function measure(s: Server) {
  await Bun.sleep(3000);
  const before = rssKiB(s.pid);
  const clients: WebSocket[] = [];
  const failed: Record<string, number> = {};
  let closedLater = 0;
  let next = 0;
  const t0 = performance.now();
  const worker = async () => {
    while (next < N) {
      const i = next++;
      try {
        const ws = await openJoined(s.url(i), `m${runId}r${Math.floor(i / ROOM_SIZE)}`);
        ws.onclose = () => closedLater++;
        clients.push(ws);
      } catch (e) {
        const k = String((e as Error).message).slice(0, 60);
        failed[k] = (failed[k] ?? 0) + 1;
      }
      if ((i + 1) % 2000 === 0)
        process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${s.name}: ${clients.length} open+joined, server RSS ${Math.round(rssKiB(s.pid) / 1024)} MiB, load ${loadavg().join(" ")}\n`);
    }
  };
  await Promise.all(Array.from({ length: Number(o.concurrency) }, worker));
  const openSec = Math.round(performance.now() - t0) / 1000;
  const atOpen = rssKiB(s.pid);
  await Bun.sleep(Number(o.idle) * 1000);
  const after = rssKiB(s.pid);
  const open = clients.filter((w) => w.readyState === WebSocket.OPEN).length;
  const line = {
    target: s.name,
    clients: N,
    openAndJoined: clients.length,
    stillOpenAfterIdle: open,
    closedDuringIdle: closedLater,
    failed,
    roomSize: ROOM_SIZE,
    openSec,
    idleSec: Number(o.idle),
    rssKiB: { before, afterOpen: atOpen, afterIdle: after },
    rssPerConnKiB: Math.round(((after - before) / Math.max(1, clients.length)) * 100) / 100,
    benchRssMiB: Math.round(process.memoryUsage().rss / 1048576),
    loadavg: loadavg(),
  };
  report(line);
  process.stderr.write(`${s.name}: ${clients.length} connections, RSS ${before} → ${after} KiB, ${line.rssPerConnKiB} KiB per connection (target ≤ 8 for bunchat); ${open} still open after ${o.idle} s idle\n`);
  for (const w of clients) w.close();
  await Bun.sleep(2000);
  return line;
}

// One process (the server, and this client) holds N sockets plus its own few dozen descriptors.
const limit = raiseNoFile(Math.max(65536, N * 2 + 1000));
if (limit < N + 500) {
  const was = N;
  N = Math.floor((limit - 1000) / ROOM_SIZE) * ROOM_SIZE;
  report({ event: "clamped", wanted: was, clients: N, why: `RLIMIT_NOFILE is ${limit} and could not be raised (no CAP_SYS_RESOURCE): a process cannot hold ${was} sockets` });
  process.stderr.write(`only ${N} clients: RLIMIT_NOFILE ${limit} could not be raised\n`);
}
try {
  const out: Record<string, unknown> = {};
  for (const name of o.target === "both" ? ["baseline", "bunchat"] : [String(o.target)]) {
    const s = name === "baseline" ? await startBaseline() : await startBunchat();
    out[name] = (await measure(s)).rssPerConnKiB;
    await cleanup();
  }
  report({ event: "summary", rssPerConnKiB: out, target: "bunchat ≤ 8 KiB per connection", loadavg: loadavg() });
} finally {
  await cleanup();
}
