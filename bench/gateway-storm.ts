// Where /api/gateway sends new connections when many arrive at once: a burst of N clients asking
// the gateway and connecting together, then, after connect refreshed its counts in etcd, kill -9
// of the busiest connect instance and the reconnect storm of its clients (each asks the gateway
// again and retries every 100 ms until a connection opens). Prints one JSON line per run with each
// phase's clients per instance and the busiest instance's share; `--src` runs other checkouts
// (e.g. one from before the power-of-two-choices gateway) alternating with this one.
// Usage: bun bench/gateway-storm.ts [--clients 400] [--connect 4] [--rounds 2] [--src DIR,DIR]
import { parseArgs } from "node:util";
import { resolve } from "node:path";
import { freeBasePort, report, ROOT, startCluster } from "./lib.ts";
import { register } from "./messaging-targets.ts";

const { values: o } = parseArgs({
  options: {
    clients: { type: "string", default: "400" },
    connect: { type: "string", default: "4" },
    rounds: { type: "string", default: "2" },
    src: { type: "string", default: "." },
  },
});
const N = Number(o.clients);
const C = Number(o.connect);
const trees = o.src!.split(",").map((d) => (d === "." ? ROOT : resolve(d)));

/** One WebSocket, resolved once open; rejected if it closes or fails first. */
function openWs(url: string): Promise<WebSocket> {
  return new Promise((res, rej) => {
    const ws = new WebSocket(url);
    ws.onopen = () => res(ws);
    ws.onerror = () => rej(new Error(`cannot open ${url}`));
    ws.onclose = (e) => rej(new Error(`closed ${e.code} before open`));
  });
}

/** As a client does: ask the gateway, connect there; on failure ask again after 100 ms (at most 100 times). */
async function viaGateway(api: string, token: string): Promise<{ ws: WebSocket; url: string }> {
  for (let attempt = 0; ; attempt++) {
    try {
      const { wsUrl } = (await (await fetch(`${api}/api/gateway`)).json()) as { wsUrl: string };
      return { ws: await openWs(`${wsUrl}?token=${encodeURIComponent(token)}`), url: wsUrl };
    } catch (e) {
      if (attempt >= 100) throw e;
      await Bun.sleep(100);
    }
  }
}

/** Clients per instance URL, busiest first, and the busiest one's share of them in %. */
function spread(urls: string[]) {
  const by: Record<string, number> = {};
  for (const u of urls) by[u] = (by[u] ?? 0) + 1;
  const counts = Object.values(by).sort((a, b) => b - a);
  return { byInstance: counts, busiestPct: Math.round((1000 * (counts[0] ?? 0)) / Math.max(1, urls.length)) / 10, busiest: Object.entries(by).sort((a, b) => b[1] - a[1])[0]?.[0] };
}

/** PID of the process listening on a TCP port (ss -ltnp). */
async function listenerPid(port: string): Promise<number> {
  const out = await new Response(Bun.spawn(["ss", "-Hltnp", `sport = :${port}`], { stdout: "pipe" }).stdout).text();
  const m = /pid=(\d+)/.exec(out);
  if (!m) throw new Error(`no listener on port ${port}`);
  return Number(m[1]);
}

for (let round = 1; round <= Number(o.rounds); round++)
  for (const [i, root] of trees.entries()) {
    const cluster = await startCluster(["--base-port", String(freeBasePort()), "--api", "1", "--logic", "1", "--task", "1", "--connect", String(C)], {}, root);
    const sockets: WebSocket[] = [];
    try {
      const api = cluster.api[0]!;
      const tokens = await register(cluster.api, N, `g${Date.now().toString(36)}${i}`, 3);
      // Phase 1: every client at once, as after a deploy or a network blip.
      const burst = await Promise.all(tokens.map(async (token) => ({ ...(await viaGateway(api, token)), token })));
      sockets.push(...burst.map((c) => c.ws));
      const first = spread(burst.map((c) => c.url));
      await Bun.sleep(3000); // connect refreshes its count in etcd every 2 s
      // Phase 2: kill -9 the busiest instance; its clients come back through the gateway.
      const victims = burst.filter((c) => c.url === first.busiest);
      const closed = victims.map((c) => new Promise<void>((res) => c.ws.addEventListener("close", () => res())));
      process.kill(await listenerPid(new URL(first.busiest!).port), "SIGKILL");
      const t0 = performance.now();
      await Promise.all(closed);
      const back = await Promise.all(victims.map((c) => viaGateway(api, c.token)));
      sockets.push(...back.map((c) => c.ws));
      const storm = spread(back.map((c) => c.url));
      report({
        src: root === ROOT ? "." : root,
        round,
        clients: N,
        connectInstances: C,
        burst: { byInstance: first.byInstance, busiestPct: first.busiestPct },
        storm: { clients: victims.length, byInstance: storm.byInstance, busiestPct: storm.busiestPct, allBackSec: Math.round(performance.now() - t0) / 1000 },
      });
    } finally {
      for (const ws of sockets) ws.close();
      await cluster.stop();
    }
  }
