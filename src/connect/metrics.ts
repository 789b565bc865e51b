// Prometheus metrics of one connect instance, on its own registry (several instances may share a process).
import { Counter, Gauge, type Registry } from "prom-client";

export type ConnectMetrics = ReturnType<typeof connectMetrics>;

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
    framesIn: new Counter({ name: "bunchat_connect_frames_in_total", help: "Frames received from clients", registers }),
    framesOut: new Counter({
      name: "bunchat_connect_frames_out_total",
      help: "Frames sent to clients (a room publish counts once per local subscriber)",
      registers,
    }),
    errors: new Counter({
      name: "bunchat_connect_errors_total",
      help: "Error frames sent to clients, by code",
      labelNames: ["code"] as const,
      registers,
    }),
    closes: new Counter({
      name: "bunchat_connect_closes_total",
      help: "Closed connections, by close code",
      labelNames: ["code"] as const,
      registers,
    }),
    pushEvents: new Counter({
      name: "bunchat_connect_push_events_total",
      help: "Events received over ConnectRPC push, by type (m message, p presence, k kick)",
      labelNames: ["t"] as const,
      registers,
    }),
  };
}
