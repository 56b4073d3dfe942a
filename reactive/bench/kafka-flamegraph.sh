#!/usr/bin/env bash
# The Kafka source's CPU flamegraph: the `kafka` bench's "each acked" consumer alone, sampled
# with perf (DWARF call graphs) over its timed rounds only (perf attaches once the topic is
# filled), folded and drawn with inferno.
#
#   reactive/bench/kafka-flamegraph.sh [OUT.svg] [RECORDS]
#
# RECORDS defaults to 1,000,000: at the bench's 300,000-500,000 records/s a round of fewer
# gives perf too few samples.
#
# Needs: perf (Debian package linux-perf), tansu on PATH, and inferno
# (`cargo install inferno --locked --no-default-features --features cli`).
# KAFKA_BENCH_ONLY=bare|batched|each picks the consumer (default each);
# KAFKA_BENCH_STORAGE picks tansu's storage engine (default memory://tansu/).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-docs/img/kafka-source-flamegraph.svg}
records=${2:-1000000}
only=${KAFKA_BENCH_ONLY:-each}
bench=$(cargo bench -p reactive --features kafka --bench kafka --no-run --message-format=json 2>/dev/null |
    grep -o '"executable":"[^"]*kafka-[^"]*"' | tail -1 | cut -d'"' -f4)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
KAFKA_BENCH_ONLY=$only BENCH_REPS=2 KAFKA_BENCH_RECORDS=$records "$bench" >"$work/out" 2>&1 &
bench_pid=$!
for _ in $(seq 600); do
    grep -q '^kafka:' "$work/out" 2>/dev/null && break
    sleep 0.5
done
perf record -F 2000 --call-graph dwarf,32768 -p "$bench_pid" -o "$work/perf.data" 2>/dev/null &
perf_pid=$!
wait "$bench_pid"
kill -INT "$perf_pid" 2>/dev/null || true
wait "$perf_pid" 2>/dev/null || true
cat "$work/out"
perf script -i "$work/perf.data" 2>/dev/null |
    inferno-collapse-perf |
    grep -v 'testbroker::Broker' |
    inferno-flamegraph --title "KafkaSource ($only), $records records x2, CPU samples by thread" >"$out"
echo "wrote $out"
