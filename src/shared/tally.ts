// Metrics touched per message or per frame, kept as plain numbers and handed to prom-client when
// /metrics is scraped. prom-client's inc() and observe() validate and hash the label object on every
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

type HistogramValue = { labels: { le?: number | string }; value: number; metricName: string };

/**
 * A Prometheus histogram without labels, kept as plain numbers: observe() adds to one bucket's
 * count, the sum and the count, and a scrape reads them. It is registered as a metric of its own
 * and exported exactly as a prom-client Histogram with the same buckets (`_bucket{le}` cumulative,
 * then `+Inf`, `_sum`, `_count`), whose observe() validates and hashes a label object each call.
 */
export class TallyHistogram {
  readonly type = "histogram";
  readonly aggregator = "sum";
  /** Per bucket, not cumulative; the last one is +Inf. */
  private readonly counts: Float64Array;
  private sum = 0;
  private count = 0;

  /** bounds: the buckets' upper bounds (inclusive), ascending, as prom-client's `buckets`. */
  constructor(
    readonly name: string,
    readonly help: string,
    private readonly bounds: readonly number[],
    registers: Registry[],
  ) {
    this.counts = new Float64Array(bounds.length + 1);
    for (const r of registers) r.registerMetric(this as unknown as Metric);
  }

  /** Counts one value (in the histogram's unit); a non-finite value is not counted (prom-client would throw). */
  observe(v: number): void {
    if (!Number.isFinite(v)) return;
    const b = this.bounds;
    let i = 0;
    while (i < b.length && v > b[i]) i++;
    this.counts[i]++;
    this.sum += v;
    this.count++;
  }

  /** What the registry reads at a scrape: the same shape as prom-client's Histogram.get(). */
  async get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: HistogramValue[] }> {
    const bucket = `${this.name}_bucket`;
    const values: HistogramValue[] = [];
    let acc = 0;
    this.bounds.forEach((le, i) => {
      acc += this.counts[i];
      values.push({ labels: { le }, value: acc, metricName: bucket });
    });
    values.push(
      { labels: { le: "+Inf" }, value: this.count, metricName: bucket },
      { labels: {}, value: this.sum, metricName: `${this.name}_sum` },
      { labels: {}, value: this.count, metricName: `${this.name}_count` },
    );
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  reset(): void {
    this.counts.fill(0);
    this.sum = 0;
    this.count = 0;
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
