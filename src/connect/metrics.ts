// Prometheus metrics of one connect instance, on its own registry (several instances may share a process).
// Counters touched per frame or per event are Tallies: a plain number the hot path adds to, handed
// to prom-client when /metrics is scraped. prom-client's inc() hashes and validates the label
// object on every call, and a labels() child only re-passes that object, so it costs the same.
import { Counter, Gauge, type Registry } from "prom-client";

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
    pushEvents: family(registers, "bunchat_connect_push_events_total", "Events received over ConnectRPC push, by type (m message, p presence, k kick, rd read position, ty typing)", "t"),
  };
}
