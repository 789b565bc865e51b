// Bytes per command name in the tail of a Redis append-only file (RESP), per XADD (i.e. per message).
// Usage: tail -c 3000000 <dir>/appendonlydir/*.incr.aof > tail.bin && bun aof-bytes.ts tail.bin
export {};
const b = Buffer.from(await Bun.file(process.argv[2]).arrayBuffer());
let i = b.indexOf("\r\n*") + 2; // align to a command start
const tally = new Map<string, { n: number; bytes: number }>();
while (i < b.length) {
  const start = i;
  if (b[i] !== 0x2a) break;
  let e = b.indexOf("\r\n", i); const argc = Number(b.toString("latin1", i + 1, e)); i = e + 2;
  let name = "";
  let ok = true;
  for (let a = 0; a < argc; a++) {
    if (b[i] !== 0x24) { ok = false; break; }
    e = b.indexOf("\r\n", i); if (e < 0) { ok = false; break; }
    const len = Number(b.toString("latin1", i + 1, e)); i = e + 2;
    if (a === 0) name = b.toString("latin1", i, i + len).toUpperCase();
    if (a === 1 && name === "SET") name += ":" + b.toString("latin1", i, Math.min(i + len, i + 12)).replace(/[^a-z:]/g, "").slice(0, 8);
    i += len + 2;
  }
  if (!ok || i > b.length) break;
  const t = tally.get(name) ?? { n: 0, bytes: 0 }; t.n++; t.bytes += i - start; tally.set(name, t);
}
const xadd = tally.get("XADD")?.n ?? 1;
for (const [k, v] of [...tally].sort((a, b) => b[1].bytes - a[1].bytes)) console.log(k.padEnd(20), v.n, v.bytes, "bytes/xadd", (v.bytes / xadd).toFixed(0), "avg", (v.bytes / v.n).toFixed(0));
