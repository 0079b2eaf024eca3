#!/usr/bin/env bash
# The highest sustained rate with p99 under a latency budget, for one and for
# two workers: open-loop runs at rising rates on the plain forwarding path
# (deploy/gateway.toml without middleware, a user-service stub answering in
# ~1 ms) until p99 exceeds the budget or a request is lost.
# Usage: loadtest/capacity.sh [BUDGET_MS] [STEP] [DURATION]
set -euo pipefail
cd "$(dirname "$0")/.."
BUDGET_MS=${1:-50}
STEP=${2:-1000}
DURATION=${3:-8s}
# shellcheck source=loadtest/lib.sh
source loadtest/lib.sh
cargo build --release -q -p routemq -p routemq-loadtest
BIN=target/release
start_broker_and_redis
export RUST_LOG=warn
sed -e '/^ *middleware = \[/d' -e 's/, middleware = \[[^]]*\]//' deploy/gateway.toml > "$WORK/plain.toml"
$BIN/routemq-loadtest upstream --listen "127.0.0.1:$(free_port)" --register user-service --latency 1ms --jitter 1ms >"$WORK/stub.log" 2>&1 & PIDS+=($!)
sleep 0.5

for workers in 1 2; do
  WORKER_PIDS=()
  for n in $(seq "$workers"); do
    $BIN/routemq worker --config "$WORK/plain.toml" --worker-id "capacity-$workers-$n" 2>>"$WORK/workers.log" & WORKER_PIDS+=($!); PIDS+=($!)
  done
  sleep 1.5
  best=0; best_line=""
  rate=$STEP
  while :; do
    $BIN/routemq-loadtest run --broker "$ROUTEMQ_MQTT_URL" --quiet --rate "$rate" --duration "$DURATION" --warmup 2s \
      --connections 4 --deadline 5s --json "$WORK/run.json" >/dev/null
    read -r p99 lost skipped rps < <(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["latency_ms"]["p99"], r["lost"], r["skipped"], round(r["throughput_rps"]))' "$WORK/run.json")
    echo "workers=$workers rate=$rate: $rps req/s, p99 ${p99} ms, lost $lost, skipped $skipped" >&2
    if python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) < float(sys.argv[2]) else 1)' "$p99" "$BUDGET_MS" && [ "$lost" = 0 ] && [ "$skipped" = 0 ]; then
      best=$rate; best_line="p99 ${p99} ms"
      rate=$((rate + STEP))
    else
      break
    fi
  done
  echo "$workers worker(s): highest sustained rate with p99 < ${BUDGET_MS} ms: $best req/s ($best_line)"
  kill "${WORKER_PIDS[@]}"; wait "${WORKER_PIDS[@]}" 2>/dev/null || true
done
