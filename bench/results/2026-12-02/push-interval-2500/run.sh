#!/bin/sh
# Rooms of 10 at 2,500 msgs/s on one node, task's push read interval (IM_PUSH_INTERVAL_MS, default
# 10) at 0, 10 and 25 ms, alternating, two rounds. Run from the checkout's root.
out=bench/results/2026-12-02/push-interval-2500
for round in 1 2; do
  for ms in 0 10 25; do
    bun bench/messaging.ts --target bunchat --colocate all --connect 1 --rates 2500 --seconds 20 \
      --warmup-seconds 30 --warmup-rate 1000 --im IM_PUSH_INTERVAL_MS=$ms \
      > $out/interval-$ms-run$round.jsonl 2> $out/interval-$ms-run$round.err
  done
done
