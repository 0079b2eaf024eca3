# Shared by the benchmark and scenario scripts: a work dir cleaned up on
# exit, free ports, and a local Mosquitto and Redis tuned like production
# (TCP_NODELAY, no broker in-flight cap, 10 000 queued messages per session). Source it from the repository root.
WORK=$(mktemp -d); echo "work dir: $WORK" >&2
PIDS=()
cleanup() { # PIDS, and pids started in subshells (listed in $WORK/extra.pids)
  for pid in "${PIDS[@]}" $(cat "$WORK/extra.pids" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }

# start_broker_and_redis: sets MOSQUITTO, REDIS, MQTT_PORT, REDIS_PORT and
# exports ROUTEMQ_MQTT_URL and ROUTEMQ_REDIS_URL.
start_broker_and_redis() {
  MQTT_PORT=$(free_port); REDIS_PORT=$(free_port)
  printf 'listener %s 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\nmax_inflight_messages 0\nmax_queued_messages 10000\npersistence false\n' "$MQTT_PORT" > "$WORK/mosquitto.conf"
  mosquitto -c "$WORK/mosquitto.conf" >/dev/null 2>&1 & MOSQUITTO=$!; PIDS+=($MOSQUITTO)
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 & REDIS=$!; PIDS+=($REDIS)
  wait_port "$MQTT_PORT"; wait_port "$REDIS_PORT"
  export ROUTEMQ_MQTT_URL="mqtt://127.0.0.1:$MQTT_PORT" ROUTEMQ_REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
}

# The shipped config reads its JWT secret from the environment.
export ROUTEMQ_JWT_HS256_SECRET; ROUTEMQ_JWT_HS256_SECRET=${ROUTEMQ_JWT_HS256_SECRET:-$(head -c 32 /dev/urandom | base64)}

# plain_config SRC DEST: SRC without its middleware (the plain forwarding path).
plain_config() { sed -e '/^ *middleware = \[/d' -e 's/, middleware = \[[^]]*\]//' "$1" > "$2"; }
