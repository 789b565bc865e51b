// Rendezvous (highest random weight) hashing of stream partitions over live task workers, with
// bounded loads: every worker computes the same owners from the same live set; each partition goes
// to the highest-weight worker that has fewer than ceil(partitions / workers), so the split is even
// (plain rendezvous can give one of two workers both of two partitions). When a worker joins or
// leaves, mostly the partitions it gains or held move.

function weight(workerId: string, partition: number): bigint {
  return BigInt(Bun.hash.wyhash(`${workerId}\u0000${partition}`));
}

/** The owner of each partition 0..partitions-1 (empty when there are no workers). */
export function owners(partitions: number, workerIds: Iterable<string>): string[] {
  const ids = [...new Set(workerIds)].sort();
  if (!ids.length) return [];
  const cap = Math.ceil(partitions / ids.length);
  const load = new Map(ids.map((id) => [id, 0]));
  const out: string[] = [];
  for (let p = 0; p < partitions; p++) {
    const ranked = ids.map((id) => ({ id, w: weight(id, p) })).sort((a, b) => (a.w === b.w ? 0 : a.w > b.w ? -1 : 1));
    const owner = ranked.find((r) => load.get(r.id)! < cap)!.id;
    load.set(owner, load.get(owner)! + 1);
    out.push(owner);
  }
  return out;
}

/** Partitions 0..partitions-1 that `me` should own given the live worker ids. */
export function assignedTo(me: string, partitions: number, workerIds: Iterable<string>): number[] {
  return owners(partitions, workerIds).flatMap((o, p) => (o === me ? [p] : []));
}
