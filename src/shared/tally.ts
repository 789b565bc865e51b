// Metrics touched per message, frame, RPC call or HTTP request, kept as plain numbers and handed
// to prom-client when /metrics is scraped. prom-client's inc() and observe() validate and hash the label object on every
// call (a labels() child only re-passes that object, so it costs the same): in a CPU profile at
// 1,000 msgs/s its observe was 4-7 % of logic's and task's samples. Exported exactly as prom-client
// exports its own Counter and Histogram (tally.test.ts compares the two).
import { Counter, type Metric, type Registry } from "prom-client";

/** A count kept as a plain number; its Counter catches up at scrape time. */
export class Tally {
  n = 0;
  /** How much of n the Counter has been given. */
  reported = 0;

  inc(by = 1): void {
    this.n += by;
  }
}

/** The Tallies of one labelled Counter, one per label value, each made once and then kept. */
export class TallyFamily {
  private readonly children = new Map<string, Tally>();

  constructor(private readonly label: string) {}

  /** The Tally of one label value; keep it in a field where the value is known in advance. */
  child(value: string): Tally {
    let t = this.children.get(value);
    if (!t) this.children.set(value, (t = new Tally()));
    return t;
  }

  /** Adds to the Counter what each child counted since the last call. */
  report(counter: Counter<string>): void {
    for (const [value, t] of this.children) {
      if (t.n === t.reported) continue;
      counter.inc({ [this.label]: value }, t.n - t.reported);
      t.reported = t.n;
    }
  }
}

type Labels = Record<string, string>;
type HistogramValue = { labels: Record<string, string | number>; sharedLabels?: Labels; value: number; metricName: string; exemplar?: null };

/** One label set's bucket counts, sum and count, kept as plain numbers; observe() adds to them. */
export class HistogramCell {
  /** Per bucket, not cumulative; the last one is +Inf. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  /** Its place in the export order; 0 while not exported (made but not observed yet, or reset since). */
  shown = 0;

  constructor(
    private readonly bounds: readonly number[],
    readonly labels: Labels,
    /** The histogram's export order counter, shared by its cells. */
    private readonly order: { n: number },
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  /** Counts one value (in the histogram's unit); a non-finite value is not counted (prom-client would throw). */
  observe(v: number): void {
    if (!Number.isFinite(v)) return;
    if (!this.shown) this.shown = ++this.order.n;
    const b = this.bounds;
    let i = 0;
    while (i < b.length && v > b[i]) i++;
    this.counts[i]++;
    this.sum += v;
    this.count++;
  }

  clear(): void {
    this.counts.fill(0);
    this.sum = 0;
    this.count = 0;
    this.shown = 0;
  }
}

/**
 * A Prometheus histogram kept as plain numbers: observe() (no labels) or child(labels).observe()
 * adds to one bucket's count, the sum and the count, and a scrape reads them. It is registered as
 * a metric of its own and exported exactly as a prom-client Histogram with the same buckets and
 * label names, whose observe() validates and hashes a label object each call: per label set
 * `_bucket{le}` cumulative, then `+Inf`, `_sum`, `_count`; label sets in the order they were first
 * observed; without labels, zeros until the first observation; after a reset, nothing until
 * observed again.
 */
export class TallyHistogram {
  readonly type = "histogram";
  readonly aggregator = "sum";
  private readonly order = { n: 0 };
  /** The one cell of a histogram without labels. */
  private readonly root?: HistogramCell;
  /** A labelled histogram's cells, by their label values (joined with NUL for several labels). */
  private readonly cells = new Map<string, HistogramCell>();

  /**
   * bounds: the buckets' upper bounds (inclusive), ascending, as prom-client's `buckets`;
   * labelNames: as prom-client's (none: observe(); else child(labels).observe()).
   */
  constructor(
    readonly name: string,
    readonly help: string,
    private readonly bounds: readonly number[],
    registers: Registry[],
    private readonly labelNames: readonly string[] = [],
  ) {
    if (!labelNames.length) {
      this.root = new HistogramCell(bounds, {}, this.order);
      this.root.shown = ++this.order.n;
    }
    for (const r of registers) r.registerMetric(this as unknown as Metric);
  }

  /** Counts one value into a histogram without labels; throws for a labelled one (use child()). */
  observe(v: number): void {
    if (!this.root) throw new Error(`${this.name} has labels: observe through child(labels)`);
    this.root.observe(v);
  }

  /**
   * The cell of one label set, made once; keep it where the labels are known. Throws for a
   * histogram without labels, or if a label name is missing or its value is not a string.
   */
  child(labels: Labels): HistogramCell {
    const names = this.labelNames;
    if (!names.length) throw new Error(`${this.name} has no labels: use observe()`);
    for (const n of names) if (typeof labels[n] !== "string") throw new Error(`${this.name}: label ${n} must be a string`);
    const key = names.length === 1 ? labels[names[0]] : names.map((n) => labels[n]).join("\0");
    let c = this.cells.get(key);
    if (!c) {
      const own: Labels = {};
      for (const n of names) own[n] = labels[n];
      this.cells.set(key, (c = new HistogramCell(this.bounds, own, this.order)));
    }
    return c;
  }

  /** What the registry reads for the text format: prom-client's Histogram.getForPromString() shape. */
  async getForPromString(): Promise<{ name: string; help: string; type: string; aggregator: string; values: HistogramValue[] }> {
    const bucket = `${this.name}_bucket`;
    const values: HistogramValue[] = [];
    const cells = (this.root ? [this.root] : [...this.cells.values()]).filter((c) => c.shown).sort((a, b) => a.shown - b.shown);
    for (const c of cells) {
      const sharedLabels = c.labels;
      let acc = 0;
      this.bounds.forEach((le, i) => {
        acc += c.counts[i];
        values.push({ labels: { le }, sharedLabels, value: acc, metricName: bucket, exemplar: null });
      });
      values.push(
        { labels: { le: "+Inf" }, sharedLabels, value: c.count, metricName: bucket, exemplar: null },
        { labels: {}, sharedLabels, value: c.sum, metricName: `${this.name}_sum` },
        { labels: {}, sharedLabels, value: c.count, metricName: `${this.name}_count` },
      );
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  /** What the registry reads for JSON: prom-client's Histogram.get() shape (the label set merged into each value's labels). */
  async get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: HistogramValue[] }> {
    const data = await this.getForPromString();
    data.values = data.values.map(({ labels, sharedLabels, ...v }) => ({ ...v, labels: { ...labels, ...sharedLabels } }));
    return data;
  }

  /** Empties every label set; cells callers keep stay valid and are exported again once they count. */
  reset(): void {
    this.root?.clear();
    for (const c of this.cells.values()) c.clear();
  }
}

/** A Counter without labels (name, help as prom-client's) fed from the returned Tally at each scrape. */
export function tally(registers: Registry[], name: string, help: string): Tally {
  const t = new Tally();
  new Counter({
    name,
    help,
    registers,
    collect() {
      if (t.n === t.reported) return;
      this.inc(t.n - t.reported);
      t.reported = t.n;
    },
  });
  return t;
}

/** A Counter with one label fed from the returned family's Tallies (one per label value) at each scrape. */
export function family(registers: Registry[], name: string, help: string, label: string): TallyFamily {
  const f = new TallyFamily(label);
  new Counter({
    name,
    help,
    labelNames: [label],
    registers,
    collect() {
      f.report(this);
    },
  });
  return f;
}
