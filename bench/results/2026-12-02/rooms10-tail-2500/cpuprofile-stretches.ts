// Ad-hoc (2 Dec 2026): busy stretches of a JSC .cpuprofile (runs of samples whose gaps are <= GAP µs)
// and what they ran. Usage: bun cpuprofile-stretches.ts FILE.cpuprofile FROM_MS TO_MS [GAP_US=1500]
export {};
const [file, fromMs, toMs, gapArg] = process.argv.slice(2);
const p = JSON.parse(await Bun.file(file).text());
const GAP = Number(gapArg ?? 1500);
const byId = new Map<number, any>(p.nodes.map((n: any) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const label = (id: number) => {
  // nearest frame with a url from our code or a package, plus the leaf
  const chain: string[] = [];
  for (let x: number | undefined = id; x !== undefined; x = parent.get(x)) {
    const f = byId.get(x).callFrame;
    if (f.functionName && !f.functionName.startsWith("(")) chain.push(`${f.functionName}@${(f.url || "").split("/").slice(-2).join("/")}:${f.lineNumber}`);
  }
  return chain;
};
let t = p.startTime;
const ts: number[] = [];
for (const d of p.timeDeltas) { t += d; ts.push(t); }
const lo = Number(fromMs) * 1000, hi = Number(toMs) * 1000;
const d0 = [...p.timeDeltas].filter((x: number) => x > 0).sort((a: number, b: number) => a - b);
console.log("min deltas", d0.slice(0, 5), "p10", d0[Math.floor(d0.length / 10)]);
const stretches: { start: number; end: number; ids: number[] }[] = [];
let cur: any = null;
for (let i = 0; i < ts.length; i++) {
  if (ts[i] < lo || ts[i] > hi) continue;
  if (cur && ts[i] - cur.end <= GAP) { cur.end = ts[i]; cur.ids.push(p.samples[i]); }
  else { if (cur) stretches.push(cur); cur = { start: ts[i], end: ts[i], ids: [p.samples[i]] }; }
}
if (cur) stretches.push(cur);
const lens = stretches.map((s) => (s.end - s.start) / 1000).sort((a, b) => b - a);
const total = (hi - lo) / 1e6;
console.log(`window ${total.toFixed(1)} s, stretches ${stretches.length}, longest ms`, lens.slice(0, 15).map((x) => x.toFixed(1)).join(" "));
console.log("stretches > 20 ms:", lens.filter((x) => x > 20).length, "> 10 ms:", lens.filter((x) => x > 10).length);
for (const s of stretches.filter((s) => s.end - s.start > 20000).slice(0, 12)) {
  const tally = new Map<string, number>();
  for (const id of s.ids) { const c = label(id); const k = c.slice(-3).reverse().join(" > ") + "  ||  " + (c[0] ?? "?"); tally.set(k, (tally.get(k) ?? 0) + 1); }
  console.log(`\n-- ${((s.end - s.start) / 1000).toFixed(1)} ms at +${((s.start - lo) / 1000).toFixed(0)} ms, ${s.ids.length} samples`);
  for (const [k, v] of [...tally].sort((a, b) => b[1] - a[1]).slice(0, 6)) console.log(`  ${v}  ${k}`);
}
