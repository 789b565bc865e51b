#!/usr/bin/env bash
# A/B of auto-aof-rewrite-min-size within one messaging.ts run: flips at each step line.
cd /work/main
OUT=$1; shift
bun bench/messaging.ts --target bunchat --colocate all --connect 1 "$@" > $OUT.jsonl 2> $OUT.err &
BP=$!
until grep -q "step warmup" $OUT.err 2>/dev/null; do sleep 0.2; done
PORT=$(ps -o args= -p $(pgrep -x redis-server | head -1) | sed 's/.*://')
vals=(1gb 64mb)
i=0
redis-cli -p $PORT config set auto-aof-rewrite-min-size ${vals[0]} >/dev/null
echo "step1 ${vals[0]}" >> $OUT.flips
n=$(grep -c "step [0-9]" $OUT.err)
while kill -0 $BP 2>/dev/null; do
  m=$(grep -c "step [0-9]" $OUT.err)
  if [ "$m" != "$n" ]; then
    n=$m; i=$((1-i))
    redis-cli -p $PORT config set auto-aof-rewrite-min-size ${vals[$i]} >/dev/null 2>&1
    redis-cli -p $PORT info persistence 2>/dev/null | grep -E "^aof_rewrites:" | tr -d '\r' >> $OUT.flips
    echo "step$((m+1)) ${vals[$i]}" >> $OUT.flips
  fi
  sleep 0.1
done
