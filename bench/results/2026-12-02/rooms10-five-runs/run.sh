#!/bin/sh
# Five runs of the rooms-of-10 target at HEAD, one node (every role in one process, one connect
# instance), each with the bare Bun baseline in the same run. Run from the checkout's root.
out=bench/results/2026-12-02/rooms10-five-runs
for i in 1 2 3 4 5; do
  bun bench/messaging.ts --target both --colocate all --connect 1 --rates 2500,5000 --seconds 20 \
    --warmup-seconds 30 --warmup-rate 1000 > $out/run$i.jsonl 2> $out/run$i.err
done
