#!/usr/bin/env bash
# The four load scenarios against a local two-worker gateway (deploy/gateway.toml)
# through Mosquitto, with upstream stubs instead of the demo services:
#   steady            the api/v1 and api/v2 chains at a steady rate: nothing lost;
#   burst             one client at 3x its rate limit: 429s counted, nothing lost;
# The shipped rate limit (1000 per 60 s per client) is scaled to 1000 per 1 s
# so a one-client load test measures the gateway rather than its limiter;
#   failing-upstream  order-service answers 500: the breaker opens, the fallback answers;
# then the chaos scenarios, each with clients retrying (same request id) and
# a fault halfway through; each reports sent, answered, lost, duplicate, late
# and the recovery time:
#   connection-cut    worker 2's broker connection is cut (it reaches the broker through a proxy);
#   redis-outage      Redis stops answering for 3 s (SIGSTOP, then SIGCONT);
#   broker-restart    Mosquitto is restarted (sessions and in-flight messages lost);
#   worker-killed     worker 1 is SIGKILLed.
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
# Worker 2 reaches the broker through a proxy whose connections can be cut.
PROXY_PORT=$(free_port)
python3 loadtest/cut_proxy.py "$PROXY_PORT" "$MQTT_PORT" & PROXY=$!; PIDS+=($PROXY)
wait_port "$PROXY_PORT"
WORKERS=()
$BIN/routemq worker --config "$CONFIG" --worker-id scenario-1 2>>"$WORK/workers.log" & WORKERS+=($!); PIDS+=($!)
ROUTEMQ_MQTT_URL="mqtt://127.0.0.1:$PROXY_PORT" $BIN/routemq worker --config "$CONFIG" --worker-id scenario-2 2>>"$WORK/workers.log" & WORKERS+=($!); PIDS+=($!)
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
# Chaos: a fault at HALF seconds into each run; clients retry after 2 s.
HALF=$(python3 -c "import sys; print(float(sys.argv[1].rstrip('s')) / 2)" "$DURATION")
chaos() { # chaos NAME FAULT_COMMAND...: the fault runs HALF s into the measured window
  local name=$1; shift
  ( sleep "$(python3 -c "print($HALF + 1)")"; "$@" ) & local fault=$!
  scenario "$name" --rate "$RATE" --duration "$DURATION" --warmup 1s --deadline 2s --retries 3 \
    --fault-at "${HALF}s" --linger 3s --topic 'api/v1/users/get/{id}' --token "$TOKEN"
  wait "$fault"
}
restart_broker() { # runs in a subshell: the new broker's pid goes to a file cleanup reads
  kill "$MOSQUITTO"; while kill -0 "$MOSQUITTO" 2>/dev/null; do sleep 0.05; done
  mosquitto -c "$WORK/mosquitto.conf" >/dev/null 2>&1 & echo $! >> "$WORK/extra.pids"
}
redis_outage() { kill -STOP "$REDIS"; sleep 3; kill -CONT "$REDIS"; }
chaos connection-cut kill -USR1 "$PROXY"
chaos redis-outage redis_outage
chaos broker-restart restart_broker
chaos worker-killed kill -9 "${WORKERS[0]}"

python3 - "$OUT" <<'PY'
import json, sys
print("\n| fault | sent | answered | lost | duplicate | late | recovery |\n|---|---|---|---|---|---|---|")
for name in ["connection-cut", "redis-outage", "broker-restart", "worker-killed"]:
    r = json.load(open(f"{sys.argv[1]}/{name}.json"))
    recovery = "not within the run" if r["recovery_s"] is None else f'{r["recovery_s"]:.1f} s'
    print(f'| {name} | {r["sent"]} | {r["replied"]} | {r["lost"]} | {r["duplicate"]} | {r["late"]} | {recovery} |')
PY
echo "reports in $OUT/"
