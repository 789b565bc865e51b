// Rendezvous (highest random weight) hashing of stream partitions over live task workers: every
// worker computes the same owner from the same live set, and when a worker joins or leaves only
// the partitions it gains or held move.

function weight(workerId: string, partition: number): bigint {
  return BigInt(Bun.hash.wyhash(`${workerId}\u0000${partition}`));
}

/** The worker that should own the partition; undefined if there is none. */
export function ownerOf(partition: number, workerIds: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestW = -1n;
  for (const id of workerIds) {
    const w = weight(id, partition);
    if (w > bestW || (w === bestW && best !== undefined && id < best)) {
      best = id;
      bestW = w;
    }
  }
  return best;
}

/** Partitions 0..partitions-1 that `me` should own given the live worker ids. */
export function assignedTo(me: string, partitions: number, workerIds: Iterable<string>): number[] {
  const ids = [...workerIds];
  const out: number[] = [];
  for (let p = 0; p < partitions; p++) if (ownerOf(p, ids) === me) out.push(p);
  return out;
}
