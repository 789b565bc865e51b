// Tight-loop costs of two per-message steps of connect, in µs per call (median of 5 rounds):
// the delivery histogram's observe (prom-client's Histogram vs our TallyHistogram; also with the
// RPC histograms' three labels, as rpc-metrics.ts observes once per call) and the strict
// decoding of a send frame (JSON.parse alone, decodeJson and decodeMsgpack from --src DIR, default
// this tree).
// Not part of the server. Usage: bun bench/connect-hotpath.ts [--src DIR]
import { parseArgs } from "node:util";
import { resolve } from "node:path";
import { Histogram, Registry } from "prom-client";
import { DELIVERY_BUCKETS } from "../src/connect/metrics.ts";
import { TallyHistogram } from "../src/shared/tally.ts";
import { pack } from "../src/shared/codec.ts";

const { values: o } = parseArgs({ options: { src: { type: "string", default: resolve(import.meta.dir, "..") } } });
const { decodeJson, decodeMsgpack } = (await import(`${resolve(o.src!)}/src/shared/wire-codec.ts`)) as {
  decodeJson: (s: string) => unknown;
  decodeMsgpack: (b: Uint8Array) => unknown;
};

const registry = new Registry();
const prom = new Histogram({ name: "a_seconds", help: "a", buckets: DELIVERY_BUCKETS, registers: [registry] });
const tally = new TallyHistogram("b_seconds", "b", DELIVERY_BUCKETS, [registry]);
const LABELS = ["service", "method", "code"] as const;
const promLabelled = new Histogram({ name: "c_seconds", help: "c", labelNames: LABELS, buckets: DELIVERY_BUCKETS, registers: [registry] });
const tallyLabelled = new TallyHistogram("d_seconds", "d", DELIVERY_BUCKETS, [registry], LABELS);
const okCell = tallyLabelled.child({ service: "bunchat.Logic", method: "send", code: "OK" });
const send = { op: "send", room: "r12", body: `123:${"x".repeat(100)}`, ref: 123 };
const frame = JSON.stringify(send);
const binary = pack(send);

/** µs per call of f over n calls, after a warm-up of n/10. */
function time(n: number, f: (i: number) => void): number {
  for (let i = 0; i < n / 10; i++) f(i);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) f(i);
  return ((performance.now() - t0) * 1000) / n;
}

const runs: Record<string, number[]> = { promObserve: [], tallyObserve: [], promObserveLabelled: [], tallyObserveLabelled: [], jsonParse: [], decodeJson: [], decodeMsgpack: [] };
for (let r = 0; r < 5; r++) {
  runs.promObserve.push(time(300_000, (i) => prom.observe(((i * 7) % 300) / 1000)));
  runs.tallyObserve.push(time(300_000, (i) => tally.observe(((i * 7) % 300) / 1000)));
  runs.promObserveLabelled.push(time(300_000, (i) => promLabelled.observe({ service: "bunchat.Logic", method: "send", code: "OK" }, ((i * 7) % 300) / 1000)));
  runs.tallyObserveLabelled.push(time(300_000, (i) => okCell.observe(((i * 7) % 300) / 1000)));
  runs.jsonParse.push(time(300_000, () => JSON.parse(frame)));
  runs.decodeJson.push(time(300_000, () => decodeJson(frame)));
  runs.decodeMsgpack.push(time(300_000, () => decodeMsgpack(binary)));
}
const median = (v: number[]) => Math.round([...v].sort((a, b) => a - b)[2] * 1000) / 1000;
console.log(JSON.stringify({ src: o.src, ...Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, median(v)])) }));
