// Summarises the .cpuprofile files that `bun bench/messaging.ts --cpu-prof DIR` makes every Bun
// process of the cluster write: per process, where its JS thread's samples went during a
// wall-clock window (a step's `window` from the bench output), by package or source folder.
// Counts samples rather than summing time deltas: a sample after an idle gap would otherwise be
// charged with the whole gap. Native frames (JSON.parse, socket writes…) are charged to the
// nearest JS caller's package, and also listed by name.
// Usage: bun bench/profile-summary.ts DIR [--from EPOCH_MS --to EPOCH_MS] [--top 12]
import { parseArgs } from "node:util";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ROLES } from "../src/cluster/args.ts";

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: Node[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { from: { type: "string" }, to: { type: "string" }, top: { type: "string", default: "12" } },
});
const dir = positionals[0];
if (!dir) throw new Error("usage: bun bench/profile-summary.ts DIR [--from EPOCH_MS --to EPOCH_MS]");
const fromUs = values.from ? Number(values.from) * 1000 : -Infinity;
const toUs = values.to ? Number(values.to) * 1000 : Infinity;
const TOP = Number(values.top);

/** Package, source folder or runtime module of a frame; undefined for native/synthetic frames. */
function categoryOf(url: string): string | undefined {
  if (!url || url === "[native code]") return undefined;
  const nm = url.lastIndexOf("node_modules/");
  if (nm >= 0) {
    const parts = url.slice(nm + 13).split("/");
    return parts[0].startsWith("@") ? `${parts[0]}/${parts[1]}` : parts[0];
  }
  const src = url.match(/\/(src|bench|proto)\/(.*)$/);
  if (src) return `${src[1]}/${src[2].replace(/\.(ts|js)$/, "")}`;
  if (url.startsWith("node:") || url.startsWith("internal:")) return `runtime ${url.split(":")[0]}:${url.split(":")[1].split("/")[0]}`;
  return url;
}

const pct = (n: number, total: number) => Math.round((n / total) * 1000) / 10;

function top(m: Map<string, number>, total: number): string[] {
  return [...m.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, TOP)
    .map(([k, v]) => `${pct(v, total)}% ${k}`);
}

for (const file of readdirSync(dir).filter((f) => f.endsWith(".cpuprofile")).sort()) {
  const p = JSON.parse(readFileSync(join(dir, file), "utf8")) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  // Category of a node: its own, or its nearest categorised ancestor's.
  const cat = new Map<number, string>();
  const catOf = (id: number): string => {
    const known = cat.get(id);
    if (known !== undefined) return known;
    const n = byId.get(id)!;
    const own = categoryOf(n.callFrame.url);
    const up = parent.get(id);
    const c = own ?? (up === undefined ? `(${n.callFrame.functionName || "native"})` : catOf(up));
    cat.set(id, c);
    return c;
  };

  const cats = new Map<string, number>();
  const fns = new Map<string, number>();
  const roleFrames = new Map<string, number>();
  let supervisor = false;
  let total = 0;
  let t = p.startTime;
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i];
    if (t < fromUs || t > toUs) continue;
    const n = byId.get(p.samples[i])!;
    total++;
    const c = catOf(n.id);
    cats.set(c, (cats.get(c) ?? 0) + 1);
    const { functionName, url, lineNumber } = n.callFrame;
    const where = categoryOf(url) ?? "native";
    const fn = `${functionName || "(anonymous)"} [${where}${lineNumber >= 0 && where !== "native" ? `:${lineNumber + 1}` : ""}]`;
    fns.set(fn, (fns.get(fn) ?? 0) + 1);
  }
  // The roles: the role folders of our src/ (not a package's) with at least 10 distinct frames and
  // 1/20 of the busiest one's (a role's process runs a few frames of other roles' modules, 1-3
  // frames; an idle co-located api still ~24); several are named as bench/lib.ts names a node,
  // node[a+b] in ROLES order. Only src/cluster and src/infra frames: the supervisor.
  for (const n of p.nodes) {
    const { url } = n.callFrame;
    const m = url.includes("node_modules") ? null : url.match(/\/src\/(api|connect|logic|task|cluster|infra)\//);
    if (!m) continue;
    if (m[1] === "cluster" || m[1] === "infra") supervisor = true;
    else roleFrames.set(m[1], (roleFrames.get(m[1]) ?? 0) + 1);
  }
  const least = Math.max(10, Math.max(0, ...roleFrames.values()) / 20);
  const roles = ROLES.filter((r) => (roleFrames.get(r) ?? 0) >= least);
  const role = roles.length > 1 ? `node[${roles.join("+")}]` : (roles[0] ?? (supervisor ? "cluster" : "?"));
  const pid = file.split(".")[3];
  console.log(JSON.stringify({ process: `${role} (pid ${pid})`, samples: total, byPackage: top(cats, total), hotFunctions: top(fns, total) }, null, 1));
}
