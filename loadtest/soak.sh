#!/usr/bin/env bash
# Redis memory under a soak of distinct requests: one worker on the full
# api/v1 chain of deploy/gateway.toml (fallback cache on, `cache_ttl` 5 min)
# with a rate limit one client never reaches, load with a fresh user id on
# every GET (ids drawn from 1M), and Redis's used memory
# and key count sampled every INTERVAL seconds. Bounded caches show as a flat
# line after warm-up; an unbounded one grows with every distinct request.
# SOAK_BIN=<another routemq binary> runs that build's worker instead (with
# BASE_CONFIG=<its shipped config> when it predates a middleware kind).
# Usage: loadtest/soak.sh [DURATION_SECONDS] [CONCURRENCY] [INTERVAL]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-60}
CONCURRENCY=${2:-64}
INTERVAL=${3:-5}
# shellcheck source=loadtest/lib.sh
source loadtest/lib.sh
cargo build --release -q -p routemq -p routemq-loadtest
BIN=target/release

start_broker_and_redis
DEMO_PORT=$(free_port)
export RUST_LOG=warn
$BIN/routemq demo-services --instances 2 --base-port "$DEMO_PORT" --register --ttl 3600s >"$WORK/demo.log" 2>&1 & PIDS+=($!)
for _ in $(seq 100); do grep -q registered "$WORK/demo.log" && break; sleep 0.05; done
BASE_CONFIG=${BASE_CONFIG:-deploy/gateway.toml}
# The sliding log holds one window of a client's requests: a 1 s window
# keeps the limiter's own share small and steady.
sed -e 's/^limit = 1000$/limit = 1000000/' -e 's/^window = "60s"$/window = "1s"/' "$BASE_CONFIG" > "$WORK/gateway-chain.toml"
TOKEN=$($BIN/routemq token --config deploy/gateway.toml --sub soak-user --ttl 2h)
"${SOAK_BIN:-$BIN/routemq}" worker --config "$WORK/gateway-chain.toml" --worker-id soak 2>"$WORK/worker.log" & PIDS+=($!)
sleep 1
memory() {
  redis-cli -p "$REDIS_PORT" info memory | awk -F: '/^used_memory:/{printf "%d", $2 / 1024}'
}
$BIN/routemq-loadtest run --broker "$ROUTEMQ_MQTT_URL" --concurrency "$CONCURRENCY" \
  --duration "${DURATION}s" --warmup 0s --quiet --json "$WORK/soak.json" \
  --header "authorization=Bearer $TOKEN" >/dev/null & LOAD=$!; PIDS+=($LOAD)
echo "seconds  used_memory_kib  keys"
start=$(date +%s)
while kill -0 "$LOAD" 2>/dev/null; do
  printf '%7d  %15s  %4s\n' "$(( $(date +%s) - start ))" "$(memory)" "$(redis-cli -p "$REDIS_PORT" dbsize)"
  sleep "$INTERVAL"
done
wait "$LOAD" || true
printf '%7d  %15s  %4s\n' "$(( $(date +%s) - start ))" "$(memory)" "$(redis-cli -p "$REDIS_PORT" dbsize)"
python3 - "$WORK/soak.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{r['replied']} requests, {r['throughput_rps']:.0f} req/s, lost {r['lost']}, errors {r['errors']}")
PY
