#!/usr/bin/env bash
# The benchmark: in one run on one machine, through one Mosquitto,
#   (a0) the bare MQTT request/response ceiling: a responder that replies at once;
#   (a)  the baseline: a responder that makes the same single HTTP call and replies;
#   (a2) the middleware baseline: a responder making one Redis script call and one HTTP call;
#   (b1) the gateway with one worker, (b2) with two, on the plain forwarding path
#        (deploy/gateway.toml without its middleware);
#   (c1) one worker running the full api/v1 chain of deploy/gateway.toml: cors, JWT auth,
#        rate limit, transform, circuit breaker, fallback (one client, limit never reached);
#   (t100), (t1) (b1) with OpenTelemetry tracing exported over OTLP/gRPC to a counting
#        sink, sampling 100 % and 1 % of traces ((b1) itself runs with tracing off);
# each ROUNDS times, interleaved so drift on a noisy machine hits all alike, each
# after an uncounted warm-up of WARMUP (default 1s) with other request ids, then
# prints medians, each as a ratio of (a), the CPU each request costs the
# process under test, and the Redis commands each request costs, counted by
# Redis itself (INFO commandstats, commands inside scripts included; the
# background tasks' share too) with the script calls (EVALSHA) among them. With BASELINE_BIN=<another routemq binary> each round
# also runs (b1), (c1) and (p1) — POSTs through the full chain, each claimed
# for safe retries — on that build, and prints this build's ratio to it.
# BASE_CONFIG=<file> (default deploy/gateway.toml) is the configuration every
# run derives its own from: give an older build's shipped config when that
# build does not know a middleware kind the current one ships.
# Usage: loadtest/bench.sh [DURATION] [CONCURRENCY] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10s}
CONCURRENCY=${2:-64}
ROUNDS=${3:-3}
WARMUP=${WARMUP:-1s}
# shellcheck source=loadtest/lib.sh
source loadtest/lib.sh
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# redis_calls: "ALL EVALSHA" commands Redis has run so far (INFO itself excluded).
redis_calls() {
  redis-cli -p "$REDIS_PORT" info commandstats | python3 -c 'import re, sys
calls = {m[1]: int(m[2]) for m in re.finditer(r"cmdstat_([a-z|]+):calls=(\d+)", sys.stdin.read())}
print(sum(v for k, v in calls.items() if k != "info"), calls.get("evalsha", 0) + calls.get("eval", 0))'
}
hz=$(getconf CLK_TCK)

cargo build --release -q -p routemq -p routemq-loadtest
BIN=target/release

start_broker_and_redis
DEMO_PORT=$(free_port)
export RUST_LOG=warn
$BIN/routemq demo-services --instances 2 --base-port "$DEMO_PORT" --register --ttl 600s >"$WORK/demo.log" 2>&1 & DEMO=$!; PIDS+=($DEMO)
for _ in $(seq 100); do grep -q registered "$WORK/demo.log" && break; sleep 0.05; done
USER_URLS=$(awk '$1=="user-service"{print "--http " $3 "/users/1"}' "$WORK/demo.log")

# measure NAME PIDS...: one run; appends to results: name, req/s, p50, p99, lost,
# errors, CPU µs per request of PIDS, and the CPU share (% of one core) of PIDS,
# mosquitto, redis, the upstreams and the load generator.
measure() {
  local name=$1; shift
  local before=0 after=0 shared_before shared_after
  # Warm up first (connections, pools, caches), with other ids, uncounted:
  # the runs compare steady states, not how fast each process starts.
  $BIN/routemq-loadtest run --broker "$ROUTEMQ_MQTT_URL" --concurrency "$CONCURRENCY" --duration "$WARMUP" --warmup 0s --seed 99 --quiet "${LOADGEN_ARGS[@]}" >/dev/null
  for pid in "$@"; do before=$((before + $(ticks "$pid"))); done
  shared_before="$(ticks "$MOSQUITTO") $(ticks "$REDIS") $(ticks "$DEMO")"
  local redis_before; redis_before=$(redis_calls)
  local start; start=$(date +%s.%N)
  local loadgen_cpu
  loadgen_cpu=$(python3 -c 'import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(usage.ru_utime + usage.ru_stime)' \
    $BIN/routemq-loadtest run --broker "$ROUTEMQ_MQTT_URL" --concurrency "$CONCURRENCY" --duration "$DURATION" --warmup 0s --quiet --json "$WORK/$name.json" "${LOADGEN_ARGS[@]}")
  local elapsed; elapsed=$(echo "$(date +%s.%N) - $start" | bc)
  for pid in "$@"; do after=$((after + $(ticks "$pid"))); done
  shared_after="$(ticks "$MOSQUITTO") $(ticks "$REDIS") $(ticks "$DEMO")"
  local redis_after; redis_after=$(redis_calls)
  python3 - "$WORK/$name.json" "$name" "$((after - before))" "$hz" "$elapsed" "$shared_before" "$shared_after" "$loadgen_cpu" "$redis_before" "$redis_after" >> "$WORK/results" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
hz, elapsed = int(sys.argv[4]), float(sys.argv[5])
cpu_us = int(sys.argv[3]) / hz * 1e6 / max(r["replied"], 1)
share = lambda ticks: ticks / hz / elapsed * 100
shared = [share(b - a) for a, b in zip(map(int, sys.argv[6].split()), map(int, sys.argv[7].split()))]
redis = [(b - a) / max(r["replied"], 1) for a, b in zip(map(int, sys.argv[9].split()), map(int, sys.argv[10].split()))]
print(sys.argv[2], r["throughput_rps"], r["latency_ms"]["p50"], r["latency_ms"]["p99"], r["lost"], r["errors"], cpu_us,
      share(int(sys.argv[3])), *shared, float(sys.argv[8]) / elapsed * 100, *redis)
if r["errors"]:
    print(f"{sys.argv[2]}: error statuses {r['statuses']}", file=sys.stderr)
PY
}

start_responder() {
  $BIN/routemq-loadtest responder --port "$MQTT_PORT" "$@" & RESPONDER=$!; PIDS+=($RESPONDER); sleep 0.5
}
# The shipped config without middleware (plain forwarding), and as shipped but
# with a rate limit one client never reaches (1M per 1 s window).
BASE_CONFIG=${BASE_CONFIG:-deploy/gateway.toml}
plain_config "$BASE_CONFIG" "$WORK/gateway-plain.toml"
sed -e 's/^limit = 1000$/limit = 1000000/' -e 's/^window = "60s"$/window = "1s"/' "$BASE_CONFIG" > "$WORK/gateway-chain.toml"
TOKEN=$($BIN/routemq token --config "$BASE_CONFIG" --sub bench-user --ttl 2h)
LOADGEN_ARGS=()
WORKER_ENV=()
ROUTEMQ=$BIN/routemq
start_worker() {
  env "${WORKER_ENV[@]}" "$ROUTEMQ" worker --config "${2:-$WORK/gateway-plain.toml}" --worker-id "$1" 2>>"$WORK/workers.log" & LAST_WORKER=$!; PIDS+=($LAST_WORKER); sleep 1
}
OTLP_PORT=$(free_port)
$BIN/routemq-loadtest otlp-sink --listen "127.0.0.1:$OTLP_PORT" 2>"$WORK/otlp-sink.log" & PIDS+=($!)
wait_port "$OTLP_PORT"
TRACING=(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$OTLP_PORT" OTEL_EXPORTER_OTLP_PROTOCOL=grpc)

for round in $(seq "$ROUNDS"); do
  echo "round $round/$ROUNDS" >&2
  start_responder
  measure "a0-bare-ceiling" "$RESPONDER"; kill "$RESPONDER"
  # shellcheck disable=SC2086
  start_responder $USER_URLS
  measure "a-responder+http" "$RESPONDER"; kill "$RESPONDER"
  # shellcheck disable=SC2086
  start_responder --redis "$ROUTEMQ_REDIS_URL" $USER_URLS
  measure "a2-responder+redis+http" "$RESPONDER"; kill "$RESPONDER"
  start_worker "bench-1-$round"; W1=$LAST_WORKER
  measure "b1-gateway-1-worker" "$W1"
  start_worker "bench-2-$round"; W2=$LAST_WORKER
  measure "b2-gateway-2-workers" "$W1" "$W2"
  kill "$W1" "$W2"; wait "$W1" "$W2" 2>/dev/null || true
  start_worker "bench-chain-$round" "$WORK/gateway-chain.toml"; W3=$LAST_WORKER
  LOADGEN_ARGS=(--header "authorization=Bearer $TOKEN")
  measure "c1-full-api-v1-chain" "$W3"
  LOADGEN_ARGS=()
  kill "$W3"; wait "$W3" 2>/dev/null || true
  WORKER_ENV=("${TRACING[@]}" OTEL_TRACES_SAMPLER=parentbased_always_on)
  start_worker "bench-t100-$round"; W4=$LAST_WORKER
  measure "t100-tracing-all" "$W4"
  kill "$W4"; wait "$W4" 2>/dev/null || true
  WORKER_ENV=("${TRACING[@]}" OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=0.01)
  start_worker "bench-t1-$round"; W5=$LAST_WORKER
  measure "t1-tracing-1pct" "$W5"
  kill "$W5"; wait "$W5" 2>/dev/null || true
  WORKER_ENV=()
  # Alternate which build goes first, so drift within a round hits both alike.
  builds=(this ${BASELINE_BIN:+baseline})
  if [ $((round % 2)) -eq 0 ] && [ -n "${BASELINE_BIN:-}" ]; then builds=(baseline this); fi
  for build in "${builds[@]}"; do
    suffix=""; ROUTEMQ=$BIN/routemq
    if [ "$build" = baseline ]; then suffix="-baseline"; ROUTEMQ=$BASELINE_BIN; fi
    if [ -n "${BASELINE_BIN:-}" ]; then
      start_worker "ab-b1$suffix-$round"; W=$LAST_WORKER
      measure "ab-b1$suffix" "$W"; kill "$W"; wait "$W" 2>/dev/null || true
      start_worker "ab-c1$suffix-$round" "$WORK/gateway-chain.toml"; W=$LAST_WORKER
      LOADGEN_ARGS=(--header "authorization=Bearer $TOKEN")
      measure "ab-c1$suffix" "$W"
      LOADGEN_ARGS=(--header "authorization=Bearer $TOKEN" --topic api/v1/users/create --payload '{"name":"bench"}')
      measure "ab-p1$suffix" "$W"
      LOADGEN_ARGS=(); kill "$W"; wait "$W" 2>/dev/null || true
    fi
  done
  ROUTEMQ=$BIN/routemq
done

python3 - "$WORK/results" "$CONCURRENCY" "$DURATION" "$ROUNDS" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, *values = line.split()
    rows.setdefault(name, []).append([float(v) for v in values])
med = {name: [statistics.median(col) for col in zip(*runs)] for name, runs in rows.items()}
base = med["a-responder+http"][0]
chain_base = med["a2-responder+redis+http"][0]
print(f"medians of {sys.argv[4]} interleaved rounds, {sys.argv[2]} outstanding, {sys.argv[3]} each")
print(f"{'run':<22} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'lost':>5} {'errors':>6} {'cpu us/req':>10} {'vs (a)':>7}"
      f" {'redis/req':>9} {'evalsha/req':>11}   CPU % of a core: {'tested':>6} {'broker':>6} {'redis':>6} {'upstr':>6} {'loadgen':>7}")
for name, (rps, p50, p99, lost, errors, cpu, tested, broker, redis, upstreams, loadgen, commands, scripts) in med.items():
    print(f"{name:<22} {rps:>8.0f} {p50:>7.2f} {p99:>7.2f} {lost:>5.0f} {errors:>6.0f} {cpu:>10.1f} {rps / base:>7.2f}"
          f" {commands:>9.2f} {scripts:>11.2f}                    {tested:>6.0f} {broker:>6.0f} {redis:>6.0f} {upstreams:>6.0f} {loadgen:>7.0f}")
print(f"ratios: b1/a = {med['b1-gateway-1-worker'][0] / base:.2f}, b2/a = {med['b2-gateway-2-workers'][0] / base:.2f}, "
      f"c1/a = {med['c1-full-api-v1-chain'][0] / base:.2f}, c1/a2 = {med['c1-full-api-v1-chain'][0] / chain_base:.2f}")
b1 = med['b1-gateway-1-worker'][0]
print(f"tracing: t100/b1 = {med['t100-tracing-all'][0] / b1:.2f}, t1/b1 = {med['t1-tracing-1pct'][0] / b1:.2f}")
print(f"targets: c1/a2 >= 0.85: {med['c1-full-api-v1-chain'][0] / chain_base:.2f}; b1/a >= 0.95: {b1 / base:.2f}; "
      f"t100/b1 >= 0.75: {med['t100-tracing-all'][0] / b1:.2f}")
for run in ["ab-b1", "ab-c1", "ab-p1"]:
    if run + "-baseline" in med:
        this, other = med[run], med[run + "-baseline"]
        print(f"this build / baseline, {run[3:]}: {this[0] / other[0]:.2f} req/s, {this[5]:.1f} vs {other[5]:.1f} us CPU per request")
PY
