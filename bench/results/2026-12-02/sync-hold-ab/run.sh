#!/bin/sh
# The sync hold (src/connect/sync-hold.ts) on the send path's hot loop: before (b1f80ee, checked
# out at $OLD with the same node_modules) and after (this checkout), default scenario (1,000
# clients, rooms of 10, 100 senders), one node, 2,500 msgs/s, alternating, three rounds.
# Run from the checkout's root: OLD=/tmp/ab-old sh bench/results/2026-12-02/sync-hold-ab/run.sh
out=$PWD/bench/results/2026-12-02/sync-hold-ab
for round in 1 2 3; do
  for side in before after; do
    dir=$PWD; [ $side = before ] && dir=$OLD
    (cd $dir && bun bench/messaging.ts --target bunchat --colocate all --connect 1 --rates 2500 --seconds 20 \
      --warmup-seconds 30 --warmup-rate 1000 > $out/$side-run$round.jsonl 2> $out/$side-run$round.err)
  done
done
