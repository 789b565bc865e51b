// Prometheus metrics of one connect instance, on its own registry (several instances may share a process).
// Counters touched per frame or per event are Tallies: a plain number the hot path adds to, handed
// to prom-client when /metrics is scraped. prom-client's inc() hashes and validates the label
// object on every call, and a labels() child only re-passes that object, so it costs the same.
// The per-message histogram is a TallyHistogram for the same reason.
import { Counter, Gauge, type Metric, type Registry } from "prom-client";

export type ConnectMetrics = ReturnType<typeof connectMetrics>;

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

function tally(registers: Registry[], name: string, help: string): Tally {
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

function family(registers: Registry[], name: string, help: string, label: string): TallyFamily {
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

/** Upper bounds of bunchat_connect_delivery_seconds (s). */
export const DELIVERY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export function connectMetrics(registry: Registry, stats: { connections: () => number; rooms: () => number }) {
  const registers = [registry];
  return {
    connections: new Gauge({
      name: "bunchat_connect_connections",
      help: "Open WebSocket connections",
      registers,
      collect() {
        this.set(stats.connections());
      },
    }),
    rooms: new Gauge({
      name: "bunchat_connect_rooms",
      help: "Rooms with at least one local joined connection",
      registers,
      collect() {
        this.set(stats.rooms());
      },
    }),
    framesIn: tally(registers, "bunchat_connect_frames_in_total", "Frames received from clients"),
    framesOut: tally(registers, "bunchat_connect_frames_out_total", "Frames sent to clients (a room publish counts once per local subscriber)"),
    errors: family(registers, "bunchat_connect_errors_total", "Error frames sent to clients, by code", "code"),
    closes: family(registers, "bunchat_connect_closes_total", "Closed connections, by close code", "code"),
    delivery: new TallyHistogram(
      "bunchat_connect_delivery_seconds",
      "From message acceptance (msg.ts) to its write to this instance's sockets, once per message and instance",
      DELIVERY_BUCKETS,
      registers,
    ),
    pushEvents: family(registers, "bunchat_connect_push_events_total", "Events received over ConnectRPC push, by type (m message, p presence, k kick, rd read position, ty typing)", "t"),
  };
}
