#!/usr/bin/env bash
# Overload and fairness against one local worker: deploy/gateway.toml without
# middleware (no rate limit, so the gateway itself is what is measured), its
# user-service a stub answering in LATENCY (default 50 ms), through Mosquitto
# holding up to 10 000 queued messages per session as the shipped one does:
#   herd      HERD_CLIENTS connections each sending HERD_EACH requests at once
#             (devices reconnecting after a broker restart): answered, refused,
#             time to drain, p50/p99;
#   fairness  a light caller (20 requests/s) alone, then beside a flooding
#             caller keeping 2 000 requests outstanding on the same service:
#             the light caller's p50/p99 both times;
#   goodput   a service serving GOODPUT_CAPACITY (default 64) requests at
#             once, the rest queueing, offered twice what it can carry
#             (open loop, 2 s Message Expiry): 2xx answered per second against
#             its capacity, and how the rest were answered.
#   memory    MEMORY_COUNT (4096) QoS 1 requests of 256 KiB (the shipped
#             limits.max_payload_bytes) at once: statuses, time to drain and
#             the worker's peak RSS against its intake budget (MEMORY_BUDGET
#             bytes, default the shipped 128 MiB).
# Usage: [SCENARIOS="herd fairness goodput memory"] loadtest/overload.sh [DURATION]   (default 10s)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10s}
LATENCY=${LATENCY:-50ms}
HERD_CLIENTS=${HERD_CLIENTS:-100}
HERD_EACH=${HERD_EACH:-20}
GOODPUT_CAPACITY=${GOODPUT_CAPACITY:-64}
MEMORY_COUNT=${MEMORY_COUNT:-4096}
MEMORY_BUDGET=${MEMORY_BUDGET:-134217728} # the shipped mqtt.intake_memory_bytes
SCENARIOS=${SCENARIOS:-herd fairness goodput memory}
# shellcheck source=loadtest/lib.sh
source loadtest/lib.sh
cargo build --release -q -p routemq -p routemq-loadtest
BIN=target/release
OUT=loadtest/reports; mkdir -p "$OUT"
start_broker_and_redis
export RUST_LOG=warn
plain_config deploy/gateway.toml "$WORK/gateway.toml"

STUB=""
stub() { # stub LATENCY [ARGS...]: the user-service stub, replacing the previous one
  [ -z "$STUB" ] || { kill "$STUB"; wait "$STUB" 2>/dev/null || true; }
  : > "$WORK/stub.log"
  $BIN/routemq-loadtest upstream --listen "127.0.0.1:$(free_port)" --register user-service --latency "$@" >"$WORK/stub.log" 2>&1 & STUB=$!; PIDS+=($STUB)
  for _ in $(seq 100); do grep -q '^upstream stub' "$WORK/stub.log" && return 0; sleep 0.05; done
  echo "stub never started" >&2; exit 1
}
WORKER=""
worker() { # a fresh worker, so each scenario starts from the shipped limits
  [ -z "$WORKER" ] || { kill "$WORKER"; wait "$WORKER" 2>/dev/null || true; }
  METRICS_PORT=$(free_port); local port=$METRICS_PORT
  ROUTEMQ_METRICS_ADDR="127.0.0.1:$port" $BIN/routemq worker --config "$WORK/gateway.toml" --worker-id "overload-$1" 2>>"$WORK/worker.log" & WORKER=$!; PIDS+=($WORKER)
  for _ in $(seq 200); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && return 0; sleep 0.05; done
  echo "worker never ready" >&2; exit 1
}
load() { # load NAME ARGS...: one routemq-loadtest run, its report in $OUT/NAME.*
  local name=$1; shift
  $BIN/routemq-loadtest run --broker "$ROUTEMQ_MQTT_URL" --quiet \
    --json "$OUT/$name.json" --markdown "$OUT/$name.md" "$@" >/dev/null
}
wants() { [[ " $SCENARIOS " == *" $1 "* ]]; }
figure() { # figure NAME EXPR: one value from a report (python expression over r)
  python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$OUT/$1.json" "$2"
}

if wants herd; then
echo "== herd: $HERD_CLIENTS clients x $HERD_EACH at once, upstream $LATENCY"
stub "$LATENCY"; worker herd
load herd --deadline 60s --connections "$HERD_CLIENTS" --burst "$HERD_EACH"
echo "   statuses $(figure herd 'r["statuses"]')  lost $(figure herd 'r["lost"]')  drained in $(figure herd 'round(r["duration_s"], 2)') s  p50 $(figure herd 'r["latency_ms"]["p50"]') ms  p99 $(figure herd 'r["latency_ms"]["p99"]') ms"

fi
if wants fairness; then
echo "== fairness: a light caller alone and beside a flood of 2000 outstanding, upstream $LATENCY"
stub "$LATENCY"; worker fairness
load light-alone --deadline 60s --rate 20 --duration "$DURATION" --warmup 1s
load flood --deadline 60s --concurrency 2000 --duration "$DURATION" --warmup 2s & FLOOD=$!
sleep 3
load light-beside-flood --deadline 60s --rate 20 --duration "$DURATION" --warmup 0s
wait "$FLOOD"
for name in light-alone light-beside-flood; do
  echo "   $name: p50 $(figure $name 'r["latency_ms"]["p50"]') ms  p99 $(figure $name 'r["latency_ms"]["p99"]') ms  statuses $(figure $name 'r["statuses"]')"
done
echo "   flood: $(figure flood 'round(r["throughput_rps"])') req/s  statuses $(figure flood 'r["statuses"]')"
echo "   light p99 beside the flood / alone: $(python3 -c "import json; a, b = (json.load(open(f'$OUT/{n}.json'))['latency_ms']['p99'] for n in ('light-alone', 'light-beside-flood')); print(round(b / a, 2))")"

fi
if wants goodput; then
echo "== goodput: a service serving $GOODPUT_CAPACITY at once in $LATENCY, offered twice what it can carry with a 2 s expiry"
stub "$LATENCY" --capacity "$GOODPUT_CAPACITY"; worker goodput
CAPACITY=$(python3 -c "import sys; print(round(int(sys.argv[1]) / (float(sys.argv[2].rstrip('ms')) / 1000)))" "$GOODPUT_CAPACITY" "$LATENCY")
load overload --rate "$((2 * CAPACITY))" --duration "$DURATION" --warmup 2s --deadline 2s --expiry
python3 - "$OUT" "$CAPACITY" <<'PY'
import json, sys
r = json.load(open(f"{sys.argv[1]}/overload.json"))
capacity = int(sys.argv[2])
ok = sum(n for status, n in r["statuses"].items() if 200 <= int(status) < 300)
goodput = ok / r["duration_s"]
print(f"   capacity {capacity} req/s; offered {r['sent'] / r['duration_s']:.0f} req/s: {goodput:.0f} answered 2xx per second "
      f"({goodput / capacity:.2f} of capacity); statuses {r['statuses']}, lost {r['lost']}, late {r['late']}, "
      f"p50 {r['latency_ms']['p50']:.0f} ms, p99 {r['latency_ms']['p99']:.0f} ms")
PY
echo "   the worker's view of user-service afterwards:"
curl -s "http://127.0.0.1:$METRICS_PORT/metrics" | grep -E '^routemq_service_(concurrency_limit|overloaded_total|queue_wait_seconds_count)\{[^}]*user-service|^routemq_(requests_shed_total|upstream_timeouts_total)' | sed 's/^/     /'
fi
if wants memory; then
echo "== memory: $MEMORY_COUNT QoS 1 requests of 256 KiB (limits.max_payload_bytes) at once, upstream $LATENCY"
sed -i "s/^intake_memory_bytes = [0-9]*/intake_memory_bytes = $MEMORY_BUDGET/" "$WORK/gateway.toml"
stub "$LATENCY"; worker memory
idle=$(awk '/VmRSS/ {print int($2 / 1024)}' "/proc/$WORKER/status")
python3 -c 'import sys; print("[[requests]]\ntopic = \"api/v1/users/create\"\npayload = \"\"\"{\\\"blob\\\": \\\"%s\\\"}\"\"\"" % ("x" * (262144 - 20)))' > "$WORK/large.toml"
load memory --burst "$MEMORY_COUNT" --scenario "$WORK/large.toml" --deadline 300s
echo "   statuses $(figure memory 'r["statuses"]')  lost $(figure memory 'r["lost"]')  drained in $(figure memory 'round(r["duration_s"], 2)') s;" \
  "worker RSS idle $idle MiB, peak $(awk '/VmHWM/ {print int($2 / 1024)}' "/proc/$WORKER/status") MiB (intake_memory_bytes: $((MEMORY_BUDGET >> 20)) MiB)"
fi
echo "reports in $OUT/"
