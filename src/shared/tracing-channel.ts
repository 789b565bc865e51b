// Bun 1.4's diagnostics_channel TracingChannel has no `hasSubscribers` (Node's has had it since
// v22). ioredis 6 decides per command whether to trace by `channel.hasSubscribers !== false`, so
// on Bun it traces every command even with nobody listening: it builds a context holding String()
// of every argument (the whole send-script blob decoded as text, per call) and wraps the command
// in tracePromise. This adds the getter with Node's meaning (any of the five sub-channels has a
// subscriber), so ioredis traces only when an instrumentation (e.g. OpenTelemetry) subscribes.
// Measured with bench/logic-send.ts, see bench/journal/2026-11-30.md "30 Nov, afternoon: send path".
// Importing this module installs it once per process; a runtime that has the getter is left alone.
import dc from "node:diagnostics_channel";

type Sub = { hasSubscribers: boolean };
const proto = Object.getPrototypeOf(dc.tracingChannel("bunchat:probe")) as object;
if (!("hasSubscribers" in proto)) {
  Object.defineProperty(proto, "hasSubscribers", {
    configurable: true,
    get(this: Record<"start" | "end" | "asyncStart" | "asyncEnd" | "error", Sub | undefined>): boolean {
      return !!(this.start?.hasSubscribers || this.end?.hasSubscribers || this.asyncStart?.hasSubscribers || this.asyncEnd?.hasSubscribers || this.error?.hasSubscribers);
    },
  });
}
