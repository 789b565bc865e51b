// Prometheus metrics of one connect instance, on its own registry (several instances may share a process).
// Counters touched per frame or per event, and the per-message histogram, are tallies
// (src/shared/tally.ts: plain numbers handed to prom-client at scrape time).
import { Gauge, type Registry } from "prom-client";
import { family, tally, TallyHistogram } from "../shared/tally.ts";

export type ConnectMetrics = ReturnType<typeof connectMetrics>;

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
