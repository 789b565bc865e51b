// Which connect instance /api/gateway names: the power of two random choices (Mitzenmacher; what
// Envoy's least_request balancer does with its default choice_count of 2). The connection counts
// in etcd are up to 2 s old (connect refreshes them every 2 s), so "the least loaded" is the same
// instance for every request in that window: a reconnect storm after an instance dies would all
// land on it, and an instance that cannot take connections (so its count stays lowest) would get
// every client. Two picks at random, keeping the one with fewer connections, still fills the
// emptier instances first but spreads a burst over all of them; such a stuck instance still gets
// 1 - (1 - 1/n)² of new clients (3/4 of n = 2, 7/16 of n = 4), and a client retrying through
// the gateway reaches another one.

/** A connect instance as its etcd registration describes it (meta.wsUrl, meta.conns, meta.ready). */
export interface ConnectCandidate {
  meta?: Record<string, unknown>;
}

/**
 * The wsUrl to hand out: of two instances drawn at random (with replacement) among the ready ones
 * (a non-empty wsUrl, ready not false: draining instances set ready false, older ones do not set it),
 * the one with fewer conns; undefined if none is ready. random: [0, 1), Math.random by default.
 */
export function pickConnect(instances: Iterable<ConnectCandidate>, random: () => number = Math.random): string | undefined {
  const ready: { url: string; conns: number }[] = [];
  for (const i of instances) {
    const url = i.meta?.wsUrl;
    // A count that is not a non-negative number (a foreign or broken registration) ranks last.
    const n = Number(i.meta?.conns ?? 0);
    if (typeof url === "string" && url && i.meta?.ready !== false) ready.push({ url, conns: Number.isFinite(n) && n >= 0 ? n : Infinity });
  }
  if (!ready.length) return undefined;
  const a = ready[Math.floor(random() * ready.length)]!;
  const b = ready[Math.floor(random() * ready.length)]!;
  return (b.conns < a.conns ? b : a).url;
}
