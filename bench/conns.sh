#!/usr/bin/env bash
# Connection load against one `gust up` (issue 16, "HTTP"): the p50/p99 of a
# plain request (one client, kept-alive connection, a wasi:http function)
# with nothing else going on (the baseline), then with IDLE silent and IDLE
# kept-alive idle connections open, while FLOODERS processes send
# 100,000-header and 1 MiB-header requests, with SSE event-stream clients
# open (then one event fanned out to all of them), and the kept-alive round
# AGAIN more times; the host's RSS and open fds per phase
# (bench/conns_load.py).
# The bounded, smaller version runs as a test: crates/gust/tests/http_load.rs.
#
#   bench/conns.sh [profile=release|debug]    (GUST=path: run that binary)
#   IDLE=10000 SSE=2000 SAMPLES=2000 FLOODERS=4 AGAIN=2 by default
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PROFILE=${1:-release}
WORK=$ROOT/target/bench
mkdir -p "$WORK"
export GUST_CACHE_DIR=$WORK/cache

# Each connection is a descriptor here and one in the host.
ulimit -n "$(ulimit -Hn)"
need=$(( ${IDLE:-10000} + ${SSE:-2000} + 500 ))
[ "$(ulimit -n)" -ge "$need" ] || { echo "conns: need ulimit -n >= $need (hard limit $(ulimit -Hn))" >&2; exit 1; }

if [ -n "${GUST:-}" ]; then
  PROFILE="$GUST"   # a given binary, e.g. an older build to compare with
elif [ "$PROFILE" = release ]; then
  cargo build --release -q -p gust
  GUST="${CARGO_TARGET_DIR:-target}/release/gust"
else
  cargo build -q -p gust
  GUST="${CARGO_TARGET_DIR:-target}/debug/gust"
fi
CARGO_TARGET_DIR=$ROOT/target/guests cargo build --release -q --target wasm32-wasip2 \
  --manifest-path tests/guests/raw-wasip2/Cargo.toml

APP=$WORK/conns-app
rm -rf "$APP" && mkdir -p "$APP"
cp "$ROOT/target/guests/wasm32-wasip2/release/raw_wasip2.wasm" "$APP/raw.wasm"
cat > "$APP/gust.toml" <<TOML
[app]
name = "conns"
[[function]]
name = "raw"
source = "raw.wasm"
trigger = { http = { route = "/raw/{*rest}", auth = "anonymous" } }
[[sse]]
route = "/jobs/{id}/events"
topic = "job-events"
subject = "{id}"
auth = "anonymous"
TOML

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
LOG=$(mktemp)
# Long timeouts: the idle connections must stay open while we measure.
"$GUST" up "$APP" --listen "127.0.0.1:$PORT" --no-watch \
  --header-timeout 300s --idle-timeout 300s >"$LOG" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -f "$LOG"' EXIT
for _ in $(seq 900); do grep -q ready "$LOG" && break; kill -0 $PID || { cat "$LOG"; exit 1; }; sleep 1; done
grep -q ready "$LOG" || { echo "gust up never became ready" >&2; cat "$LOG"; exit 1; }
HOST_KEY=$("$GUST" keys "$APP" --host)

echo "conns: gust ($PROFILE) pid $PID on 127.0.0.1:$PORT; $(nproc) cores, $(free -g | awk '/^Mem/ {print $2}') GiB," \
  "$(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg), ulimit -n $(ulimit -n)"
python3 bench/conns_load.py "127.0.0.1:$PORT" "$PID" "$HOST_KEY"
kill -0 $PID || { echo "gust died" >&2; cat "$LOG" >&2; exit 1; }
echo "- load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
