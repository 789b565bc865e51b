#!/usr/bin/env bash
# Alternating whole runs: "64mb" sets Redis's old minimum with CONFIG SET as soon as it answers; "256mb" is the new default.
cd /work/main
for round in 1 2; do
for v in 64mb 256mb; do
  OUT=/tmp/pf/abr/$v-run$round
  bun bench/messaging.ts --target bunchat --colocate all --connect 1 --rates 1000,5000 --seconds 40 --warmup-seconds 30 --warmup-rate 1000 > $OUT.jsonl 2> $OUT.err &
  BP=$!
  until P=$(pgrep -x redis-server | head -1) && [ -n "$P" ]; do sleep 0.1; done
  PORT=$(ps -o args= -p $P | sed 's/.*://')
  until redis-cli -p $PORT ping 2>/dev/null | grep -q PONG; do sleep 0.1; done
  redis-cli -p $PORT config set auto-aof-rewrite-min-size $v > $OUT.cfg
  redis-cli -p $PORT config get auto-aof-rewrite-min-size >> $OUT.cfg
  while kill -0 $BP 2>/dev/null; do redis-cli -p $PORT info persistence 2>/dev/null | grep -E "^aof_rewrites:" | tr -d '\r' | sed "s/^/$(date +%T) /" >> $OUT.rw; sleep 2; done
done
done
