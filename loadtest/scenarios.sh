#!/usr/bin/env bash
# The four load scenarios against a local two-worker gateway (deploy/gateway.toml)
# through Mosquitto, with upstream stubs instead of the demo services:
#   steady            the api/v1 and api/v2 chains at a steady rate: nothing lost;
#   burst             one client at 3x its rate limit: 429s counted, nothing lost;
# The shipped rate limit (1000 per 60 s per client) is scaled to 1000 per 1 s
# so a one-client load test measures the gateway rather than its limiter;
#   failing-upstream  order-service answers 500: the breaker opens, the fallback answers;
#   worker-killed     a worker is SIGKILLed mid-run: lost and late replies reported.
# Reports (JSON, Markdown, SVG) land in loadtest/reports/. Works against any
# broker: set BROKER=mqtt://… (and skip the local one) to point it elsewhere.
# Usage: loadtest/scenarios.sh [RATE] [DURATION]
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${1:-500}
DURATION=${2:-10s}
# shellcheck source=loadtest/lib.sh
source loadtest/lib.sh
cargo build --release -q -p routemq -p routemq-loadtest
BIN=target/release
OUT=loadtest/reports; mkdir -p "$OUT"

start_broker_and_redis
export RUST_LOG=warn
CONFIG=$WORK/gateway.toml
sed -e 's/^window = "60s"$/window = "1s"/' deploy/gateway.toml > "$CONFIG"
stub() { # stub SERVICE ARGS...: an upstream stub registered as SERVICE
  local service=$1; shift
  $BIN/routemq-loadtest upstream --listen "127.0.0.1:$(free_port)" --register "$service" "$@" >>"$WORK/stubs.log" 2>&1 & PIDS+=($!)
}
stub user-service --latency 1ms --jitter 2ms --tail-latency 20ms --tail-fraction 0.01
stub user-service-v2 --latency 1ms --jitter 2ms
stub order-service --error-rate 1.0
stub order-service-fallback --latency 1ms
for _ in $(seq 100); do
  started=$(grep -c '^upstream stub' "$WORK/stubs.log" 2>/dev/null || true)
  [ "${started:-0}" -ge 4 ] && break; sleep 0.05
done
WORKERS=()
for n in 1 2; do
  $BIN/routemq worker --config "$CONFIG" --worker-id "scenario-$n" 2>>"$WORK/workers.log" & WORKERS+=($!); PIDS+=($!)
done
sleep 1.5
TOKEN=$($BIN/routemq token --config "$CONFIG" --sub steady-user)
BURST_TOKEN=$($BIN/routemq token --config "$CONFIG" --sub burst-user)
export TOKEN BURST_TOKEN

scenario() { # scenario NAME ARGS...
  local name=$1; shift
  echo "== $name"
  $BIN/routemq-loadtest run --broker "$ROUTEMQ_MQTT_URL" --quiet \
    --json "$OUT/$name.json" --markdown "$OUT/$name.md" --svg "$OUT/$name.svg" "$@"
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("   statuses", r["statuses"], " lost", r["lost"], " late", r["late"], " duplicate", r["duplicate"])' "$OUT/$name.json"
}

scenario steady --rate "$RATE" --duration "$DURATION" --warmup 1s --scenario loadtest/scenarios/steady.toml
scenario burst --rate 3000 --duration 2s --warmup 0s --scenario loadtest/scenarios/burst.toml
scenario failing-upstream --rate 200 --duration "$DURATION" --warmup 0s --scenario loadtest/scenarios/failing-upstream.toml
# Kill one worker halfway through; Mosquitto drops what it had in flight.
( sleep "$(python3 -c "import sys; print(float(sys.argv[1].rstrip('s')) / 2 + 1)" "$DURATION")"; kill -9 "${WORKERS[0]}" ) &
scenario worker-killed --rate "$RATE" --duration "$DURATION" --warmup 1s --deadline 2s --topic 'api/v1/users/get/{id}' --token "$TOKEN"
echo "reports in $OUT/"
