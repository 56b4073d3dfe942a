#!/bin/sh
# Issue 14, item 3: does memory grow with the length of a run? Runs a lossless constant load
# through a separate sinkd process, so the processor's (loadgen's) RSS and the sink's (sinkd's,
# which holds the delivery audit) are measured apart, and prints each one's RSS after 60 s and
# at the end, and the growth in between. Each is the least RSS over a 10 s window, so a
# transient spike (a CPU hiccup fills a queue for a moment) does not read as growth.
#
#   loadgen/bench/rss-slope.sh [LOADGEN] [SINKD] [SECONDS] [RATE] [SAMPLE]
#
# Defaults: target/release/{loadgen,sinkd}, 180 s, 40000 events/s, 250ms. The sink takes
# batches of 200 at up to 1000 writes/s, so it keeps up and the queue stays near empty: what
# grows is what a run keeps, not backlog. A shorter SAMPLE makes per-sample growth show sooner.
# RSS also moves with the allocator (a CPU hiccup fills a queue, and glibc keeps the pages), so
# compare a few runs, not one.
set -eu
LOADGEN=${1:-target/release/loadgen}
SINKD=${2:-target/release/sinkd}
SECS=${3:-180}
RATE=${4:-40000}
SAMPLE=${5:-250ms}
OUT=$(mktemp -d)
PORT=$((20000 + $$ % 20000))

"$SINKD" --listen "127.0.0.1:$PORT" --rate-limit 1000 >"$OUT/sinkd.log" 2>&1 &
SINK=$!
trap 'kill $SINK 2>/dev/null || true' EXIT
sleep 1
"$LOADGEN" run --profile constant --rate "$RATE" --duration "${SECS}s" --sample "$SAMPLE" \
  --sink-url "http://127.0.0.1:$PORT" --sink-mode batch --batch-size 200 \
  --queue bounded --queue-cap 10000 --quiet --out "$OUT/run" >"$OUT/run.txt" 2>&1 &
RUN=$!
START=$(date +%s)
# sinkd's RSS every 5 s, while the run lasts.
while kill -0 $RUN 2>/dev/null; do
  echo "$(( $(date +%s) - START )) $(awk '{print $2 * 4096}' /proc/$SINK/statm)" >>"$OUT/sinkd-rss.txt"
  sleep 5
done
wait $RUN || true

grow() { # file of "t rss" lines -> the least RSS over [60 s, 70 s) and over the last 10 s
  # (the least, so a passing spike does not count: what stays is what grows), and the growth/s
  awk -v end="$SECS" '$1 >= 60 && $1 < 70 && (!a || $2 < r0) { r0 = $2; a = 1 }
    $1 >= end - 10 && $1 <= end && (!b || $2 < r1) { r1 = $2; b = 1 }
    END { printf "%.2f MB at 60-70 s, %.2f MB in the last 10 s: %+.2f KB/s\n",
          r0 / 1e6, r1 / 1e6, (r1 - r0) / (end - 65 - 5) / 1e3 }' "$1"
}
awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) { if ($i == "t") t = i; if ($i == "rss_bytes") r = i }; next }
  { print $t, $r }' "$OUT/run/timeseries.csv" >"$OUT/loadgen-rss.txt"
echo "processor (loadgen): $(grow "$OUT/loadgen-rss.txt")"
echo "sink (sinkd):        $(grow "$OUT/sinkd-rss.txt")"
grep -E '^  (produced|delivered|lost|sink audit holds) ' "$OUT/run.txt" || cat "$OUT/run.txt"
echo "(files in $OUT)"
