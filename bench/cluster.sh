#!/usr/bin/env bash
# Cluster scaling, side by side in one run: 1, 2 and 3 `gust serve` nodes of
# one cluster (NATS JetStream + PostgreSQL on 127.0.0.1) drain the same queue
# workload whose function waits on I/O: each message makes one outbound GET
# to a local upstream that answers after 20 ms (bench/cluster-worker), so a
# node's throughput is bound by waiting, not by the two cores.
#
# Per node count: a fresh cluster; the app is deployed with its worker on
# another queue, N messages are sent to `jobs` through the admin API, then a
# new version pointing the worker at `jobs` is deployed; timed from that
# deploy to N `handled` log lines over all nodes. Spread = each node's share
# of the N (its own functions.log).
#
#   bench/cluster.sh              # N=3000 CONC=16 PROFILE=release by default
#   PROFILE=debug bench/cluster.sh   # the debug binary (dependencies optimised)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
N=${N:-3000}
CONC=${CONC:-16}
PROFILE=${PROFILE:-release}
NATS=${NATS:-nats://127.0.0.1:4222}
PG=${PG:-postgres://postgres@127.0.0.1:5432/test}
WORK=$ROOT/target/bench/cluster
rm -rf "$WORK"; mkdir -p "$WORK"
export GUST_CACHE_DIR=$ROOT/target/bench/cache

if [ "$PROFILE" = release ]; then cargo build --release -q -p gust; else cargo build -q -p gust; fi
CARGO_TARGET_DIR=$ROOT/target/guests cargo build --release -q --target wasm32-wasip2 \
  --manifest-path bench/cluster-worker/Cargo.toml
GUST=$ROOT/target/$PROFILE/gust
WASM=$ROOT/target/guests/wasm32-wasip2/release/cluster_worker.wasm

# The upstream: answers every GET after 20 ms, many at once.
UP_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 - "$UP_PORT" <<'PY' &
import sys, time
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        time.sleep(0.02)
        self.send_response(200); self.send_header("content-length", "2"); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass
ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer.request_queue_size = 1024
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
UP_PID=$!
PIDS=()
cleanup() { kill "${PIDS[@]}" "$UP_PID" 2>/dev/null || true; }
trap cleanup EXIT

manifest() { # queue
  cat <<TOML
[app]
name = "work"
[variables]
upstream = { default = "http://127.0.0.1:$UP_PORT/" }
[[function]]
name = "worker"
source = "worker.wasm"
trigger = { queue = { queue = "$1", concurrency = $CONC } }
outbound_http = ["http://127.0.0.1:*"]
TOML
}

handled() { # cluster-dir -> total handled lines
  cat "$1"/node*/.gust-node/apps/work/state/logs/functions.log 2>/dev/null | grep -c 'handled m' || true
}

RESULTS=()
for NODES in 1 2 3; do
  C=$WORK/c$NODES; mkdir -p "$C/app"
  NAME=bench-$NODES-$$
  KEY=bench-admin-key-$NAME
  echo "$KEY" > "$C/admin.key"
  cp "$WASM" "$C/app/worker.wasm"
  URLS=()
  for i in $(seq 1 $NODES); do
    mkdir -p "$C/node$i"
    printf 'listen = "127.0.0.1:0"\n[cluster]\nname = "%s"\nnats = "%s"\npostgres = "%s"\nadmin_key_file = "../admin.key"\n' \
      "$NAME" "$NATS" "$PG" > "$C/node$i/node.toml"
    "$GUST" serve --config "$C/node$i/node.toml" > "$C/node$i/out" 2> "$C/node$i/err" &
    PIDS+=($!)
  done
  for i in $(seq 1 $NODES); do
    for _ in $(seq 1 300); do grep -q ready "$C/node$i/out" && break; sleep 0.1; done
    URLS+=("$(grep -o 'ready on http://[0-9.:]*' "$C/node$i/out" | cut -d' ' -f3)")
  done
  URL=${URLS[0]}
  manifest parked > "$C/app/gust.toml"
  "$GUST" deploy "$C/app" --url "$URL" --key "$KEY" >/dev/null 2>&1
  for _ in $(seq 1 100); do curl -fs "$URL/work/_gust/queues/jobs" -H "x-gust-key: $KEY" >/dev/null 2>&1 && break; sleep 0.1; done
  seq -f 'm%05g' 1 "$N" | xargs -P 16 -I{} curl -fs -o /dev/null -X POST "$URL/work/_gust/queues/jobs/messages" \
    -H "x-gust-key: $KEY" -H 'content-type: text/plain' --data {}
  manifest jobs > "$C/app/gust.toml"
  START=$(date +%s.%N)
  "$GUST" deploy "$C/app" --url "$URL" --key "$KEY" >/dev/null 2>&1
  while [ "$(handled "$C")" -lt "$N" ]; do sleep 0.1; done
  END=$(date +%s.%N)
  SPREAD=$(for i in $(seq 1 $NODES); do grep -c 'handled m' "$C/node$i/.gust-node/apps/work/state/logs/functions.log" 2>/dev/null || echo 0; done | paste -sd/)
  RATE=$(python3 -c "print(round($N/($END-$START)))")
  RESULTS+=("| $NODES | $N | $(python3 -c "print(round($END-$START,2))") s | $RATE msg/s | $SPREAD |")
  kill "${PIDS[@]}" 2>/dev/null || true; wait "${PIDS[@]}" 2>/dev/null || true; PIDS=()
  psql "$PG" -qAtc "DELETE FROM gust_cluster_artifacts WHERE cluster='$NAME'; DELETE FROM gust_cluster_releases WHERE cluster='$NAME'; DELETE FROM gust_cluster_keys WHERE cluster='$NAME'; DELETE FROM gust_cluster_nodes WHERE cluster='$NAME'; DROP SCHEMA IF EXISTS gust_$(echo "${NAME}_work" | tr -c 'a-zA-Z0-9\n' '_') CASCADE" >/dev/null
done

echo "machine: $(nproc) cores, $(uptime | sed 's/.*load average/load average/')"
echo "| nodes | messages | drain time | throughput | handled per node |"
echo "|---|---|---|---|---|"
printf '%s\n' "${RESULTS[@]}"
