#!/usr/bin/env bash
# One command from a fresh Debian machine to a running two-worker gateway:
# installs mosquitto, mosquitto-clients and redis-server if missing, starts
# them on loopback, builds, starts and registers the demo services, starts two
# workers, sends sample requests with mosquitto_rr and prints the replies.
# Then it keeps everything running until Ctrl-C (or exits at once with --once).
set -euo pipefail
cd "$(dirname "$0")/.."
ONCE=${1:-}
MQTT_PORT=${MQTT_PORT:-1883}
REDIS_PORT=${REDIS_PORT:-6379}
RUN=$(mktemp -d)
PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$RUN"; }
trap cleanup EXIT
listening() { (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null; }
wait_port() { for _ in $(seq 200); do listening "$1" && return 0; sleep 0.05; done; echo "nothing listens on port $1" >&2; exit 1; }

missing=()
command -v mosquitto >/dev/null || missing+=(mosquitto)
command -v mosquitto_rr >/dev/null || missing+=(mosquitto-clients)
command -v redis-server >/dev/null || missing+=(redis-server)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]}"
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi

if listening "$MQTT_PORT"; then
  echo "== using the MQTT broker already on 127.0.0.1:$MQTT_PORT"
else
  echo "== starting mosquitto on 127.0.0.1:$MQTT_PORT"
  printf 'listener %s 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\nmax_inflight_messages 0\npersistence false\n' "$MQTT_PORT" > "$RUN/mosquitto.conf"
  mosquitto -c "$RUN/mosquitto.conf" >"$RUN/mosquitto.log" 2>&1 & PIDS+=($!)
  wait_port "$MQTT_PORT"
fi
if listening "$REDIS_PORT"; then
  echo "== using the Redis already on 127.0.0.1:$REDIS_PORT"
else
  echo "== starting redis-server on 127.0.0.1:$REDIS_PORT"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >"$RUN/redis.log" 2>&1 & PIDS+=($!)
  wait_port "$REDIS_PORT"
fi
export ROUTEMQ_MQTT_URL="mqtt://127.0.0.1:$MQTT_PORT" ROUTEMQ_REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
# The shipped config reads its JWT secret from the environment; make one up if unset.
if [ -z "${ROUTEMQ_JWT_HS256_SECRET:-}" ]; then
  ROUTEMQ_JWT_HS256_SECRET=$(head -c 32 /dev/urandom | base64)
  echo "== generated a JWT secret for this run (set ROUTEMQ_JWT_HS256_SECRET to choose one)"
fi
export ROUTEMQ_JWT_HS256_SECRET

echo "== building (release)"
cargo build --release -q -p routemq
BIN=target/release/routemq

echo "== starting the demo services (2 instances each) and registering them"
$BIN demo-services --instances 2 --base-port 0 --register --ttl 30s >"$RUN/demo.log" 2>&1 & PIDS+=($!)
for _ in $(seq 200); do grep -q "^registered" "$RUN/demo.log" && break; sleep 0.05; done
grep -q "^registered" "$RUN/demo.log" || { cat "$RUN/demo.log"; exit 1; }

echo "== starting two gateway workers"
for n in 1 2; do
  $BIN worker --config deploy/gateway.toml --worker-id "quickstart-$n" 2>"$RUN/worker-$n.log" & PIDS+=($!)
done
for n in 1 2; do
  for _ in $(seq 200); do grep -q "subscribed" "$RUN/worker-$n.log" && break; sleep 0.05; done
done
sleep 1.2 # one registry refresh

# ask REPLY_TOPIC TOPIC PAYLOAD [NAME VALUE]...: one request, with user
# properties. The shipped config answers a caller only under
# replies/<its token's sub>/… or, for anyone, replies/anonymous/….
ask() {
  local reply=$1 topic=$2 payload=$3; shift 3
  local props=() shown=""
  while [ $# -ge 2 ]; do props+=(-D PUBLISH user-property "$1" "$2"); shown+=" -D PUBLISH user-property $1 '${2:0:24}…'"; shift 2; done
  echo
  echo "\$ mosquitto_rr -V 5 -t $topic -e $reply -m '$payload'$shown"
  mosquitto_rr -h 127.0.0.1 -p "$MQTT_PORT" -V 5 -q 1 -t "$topic" -e "$reply" -m "$payload" "${props[@]}" -W 10 -F '%P  %p'
}
ANON=replies/anonymous/quickstart USER=replies/user-42/quickstart OPS=replies/admin-1/quickstart
TOKEN=$($BIN token --config deploy/gateway.toml --sub user-42 --roles user)
ADMIN=$($BIN token --config deploy/gateway.toml --sub admin-1 --roles admin)
API_KEY=$($BIN api-keys create --name quickstart --scopes users:read 2>/dev/null | awk '/^key:/{print $2}')
sleep 1.1 # workers reload API keys every second
ask $ANON api/v1/users/get/42 ''
ask $USER api/v1/users/get/42 '' authorization "Bearer $TOKEN"
ask $USER api/v1/users/get/42 '' authorization "Bearer $TOKEN"
ask $ANON api/v1/users/get/7 '' x-api-key "$API_KEY"
ask $USER api/v1/users/create '{"name":"John Doe","email":"john@example.com","role":"user"}' authorization "Bearer $TOKEN"
ask $USER api/v1/users/delete/7 '' authorization "Bearer $TOKEN"
ask $OPS api/v1/users/delete/7 '' authorization "Bearer $ADMIN"
ask $USER api/v1/orders/list/42 '{"page":2}' authorization "Bearer $TOKEN"
ask $USER api/v2/users/activate '{"user_data":{"id":42}}' authorization "Bearer $TOKEN"
ask $USER api/v1/users/get/42 '' authorization "Bearer $TOKEN" origin https://app.example.com method OPTIONS
ask $USER api/v1/users/get/.. '' authorization "Bearer $TOKEN"
ask $ANON api/v1/nothing/here '{}'
ask $ANON gateway/health ''
ask $ANON gateway/services ''
ask $OPS gateway/services '' authorization "Bearer $ADMIN"
sleep 1.1 # one metrics flush
ask $OPS gateway/metrics '' authorization "Bearer $ADMIN"
echo
[ "$ONCE" = "--once" ] && exit 0
echo "== running: broker 127.0.0.1:$MQTT_PORT, Redis 127.0.0.1:$REDIS_PORT, logs in $RUN. Ctrl-C stops everything."
wait
