#!/usr/bin/env bash
# What metrics and traces cost, side by side in one run on this machine:
# the HTTP hello of bench/http.sh (wrk) and the embedded-queue "send + drain"
# of bench/queue.sh (no-op event function), each run three ways:
#   off      plain `gust up`: no trace export; metrics are always counted
#            (relaxed atomics) but nobody scrapes them
#   on 1%    --metrics-listen scraped every second + --otlp-endpoint to a
#            local OTLP sink, --trace-sample 0.01 (the setting to run with)
#   on 100%  the same, every invocation exported (the worst case)
# The sink (python, on the same cores) answers 200 to every POST and counts
# requests and bytes. Runs alternate off/on/on per round, ROUNDS rounds, to
# spread drift of the shared machine over all three.
#
#   bench/observe.sh                 # release build; DUR=10 CONN=32 N=20000 ROUNDS=2
#   PROFILE=debug bench/observe.sh   # the debug build (say so with the figures)
#   MODES="bare off" PARTS=queue bench/observe.sh   # what keeping event inputs
#                                    # for `gust replay` costs the queue path
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DUR=${DUR:-10}
CONN=${CONN:-32}
THREADS=${THREADS:-1}
N=${N:-20000}
CONNS=${CONNS:-32}
ROUNDS=${ROUNDS:-2}
PROFILE=${PROFILE:-release}
# "off": no metrics listener, no trace export (event inputs are kept for
# replay, the default); "bare": off, and no inputs kept either
# (--replay-max-bytes 0); "on1"/"on100": metrics + traces sampled 1%/100%.
MODES=${MODES:-off on1 on100}
PARTS=${PARTS:-http queue}
WORK=$ROOT/target/bench
mkdir -p "$WORK"
export GUST_CACHE_DIR=$WORK/cache

# ---- tools and builds ------------------------------------------------------
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
if [ "$PROFILE" = release ]; then
  cargo build --release -q -p gust
  cargo build --release -q --manifest-path bench/queue-raw/Cargo.toml --target-dir target
else
  cargo build -q -p gust
  cargo build -q --manifest-path bench/queue-raw/Cargo.toml --target-dir target
fi
GUST=$ROOT/target/$PROFILE/gust
RAW=$ROOT/target/$PROFILE/queue-raw
CARGO_TARGET_DIR=$ROOT/target/guests cargo build --release -q --target wasm32-wasip2 \
  --manifest-path tests/guests/raw-wasip2/Cargo.toml
CARGO_TARGET_DIR=$ROOT/target/guests cargo build --release -q --target wasm32-wasip2 \
  --manifest-path tests/guests/event-noop/Cargo.toml
HELLO=$ROOT/target/guests/wasm32-wasip2/release/raw_wasip2.wasm
NOOP=$ROOT/target/guests/wasm32-wasip2/release/event_noop.wasm

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# ---- the OTLP sink and the scraper -------------------------------------------
SINK_PORT=${SINK_PORT:-18399}
python3 - "$SINK_PORT" "$WORK/otlp-sink.count" <<'PY' & pids+=($!)
import http.server, sys, threading
port, out = int(sys.argv[1]), sys.argv[2]
lock, seen = threading.Lock(), [0, 0]
class Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        with lock:
            seen[0] += 1; seen[1] += len(body)
            open(out, "w").write(f"{seen[0]} {seen[1]}\n")
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), Sink).serve_forever()
PY
rm -f "$WORK/otlp-sink.count"
sink_count() { cat "$WORK/otlp-sink.count" 2>/dev/null || echo "0 0"; }

scrape() { # port: GET /metrics every second until killed
  while sleep 1; do curl -sf "http://127.0.0.1:$1/metrics" >/dev/null || true; done
}

mode_flags() { # mode metrics-port
  case $1 in
    bare) echo "--replay-max-bytes 0" ;;
    off) ;;
    on1) echo "--metrics-listen 127.0.0.1:$2 --otlp-endpoint http://127.0.0.1:$SINK_PORT --trace-sample 0.01" ;;
    on100) echo "--metrics-listen 127.0.0.1:$2 --otlp-endpoint http://127.0.0.1:$SINK_PORT --trace-sample 1" ;;
  esac
}
label() { case $1 in bare) echo "off, and no event inputs kept for replay";; off) echo "off";; on1) echo "metrics + traces, 1% sampled";; on100) echo "metrics + traces, 100% sampled";; esac; }

# ---- apps ----------------------------------------------------------------------
HAPP=$WORK/observe-http
rm -rf "$HAPP" && mkdir -p "$HAPP" && cp "$HELLO" "$HAPP/hello.wasm"
cat > "$HAPP/gust.toml" <<TOML
[app]
name = "bench"
[[function]]
name = "hello"
source = "hello.wasm"
trigger = { http = { route = "/hello", auth = "anonymous" } }
limits = { concurrency = 1024 }
TOML
QAPP=$WORK/observe-queue
rm -rf "$QAPP" && mkdir -p "$QAPP" && cp "$NOOP" "$QAPP/noop.wasm"
cat > "$QAPP/gust.toml" <<TOML
[app]
name = "qobserve"
[[function]]
name = "noop"
source = "noop.wasm"
trigger = { queue = { queue = "jobs", batch_size = 64, concurrency = 64, visibility = "60s" } }
TOML

start_gust() { # app port log mode mport -> pid in $gpid, scraper in $spid
  local flags; flags=$(mode_flags "$4" "$5")
  # shellcheck disable=SC2086
  "$GUST" up "$1" --listen 127.0.0.1:$2 --quiet --no-watch $flags > "$3" 2>&1 & gpid=$!
  pids+=($gpid)
  until grep -q ready "$3" 2>/dev/null; do sleep 0.1; kill -0 $gpid || { cat "$3"; exit 1; }; done
  spid=
  if [ "$4" != off ]; then scrape "$5" & spid=$!; pids+=($spid); fi
}
stop_gust() {
  [ -n "$spid" ] && kill "$spid" 2>/dev/null || true
  kill "$gpid"; wait "$gpid" 2>/dev/null || true
}

http_rows=() queue_rows=()
port=18300
for round in $(seq 1 "$ROUNDS"); do
  for mode in $MODES; do
    if [[ " $PARTS " == *" http "* ]]; then
    # HTTP hello
    port=$((port + 2))
    start_gust "$HAPP" $port "$WORK/observe-http.log" $mode $((port + 1))
    curl -sf "http://127.0.0.1:$port/hello" >/dev/null
    wrk -t"$THREADS" -c"$CONN" -d2s "http://127.0.0.1:$port/hello" >/dev/null
    before=$(sink_count)
    out=$(wrk -t"$THREADS" -c"$CONN" -d"${DUR}s" --latency "http://127.0.0.1:$port/hello")
    sleep 1.5   # the last batch
    after=$(sink_count)
    stop_gust
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '/^ +50%/ {print $2}' <<<"$out")
    p99=$(awk '/^ +99%/ {print $2}' <<<"$out")
    posts=$(( ${after% *} - ${before% *} )); bytes=$(( ${after#* } - ${before#* } ))
    http_rows+=("$round|$(label $mode)|$rps|$p50|$p99|$posts|$bytes")
    echo "http round $round $mode: $rps req/s p50 $p50 p99 $p99; sink: $posts POSTs, $bytes bytes" >&2
    fi
    [[ " $PARTS " == *" queue "* ]] || continue

    # Queue send + drain on the embedded store
    port=$((port + 2))
    rm -rf "$QAPP/.gust"
    start_gust "$QAPP" $port "$WORK/observe-queue.log" $mode $((port + 1))
    key=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["admin"])' "$QAPP/.gust/keys.json")
    before=$(sink_count)
    out=$("$RAW" send --url "http://127.0.0.1:$port" --key "$key" --queue jobs --n "$N" --conns "$CONNS" --wait-drained)
    sleep 1.5
    after=$(sink_count)
    stop_gust
    rate=$(tr ' ' '\n' <<<"$out" | awk -F= '$1 == "rate" {print $2}')
    secs=$(tr ' ' '\n' <<<"$out" | awk -F= '$1 == "secs" {print $2}')
    posts=$(( ${after% *} - ${before% *} )); bytes=$(( ${after#* } - ${before#* } ))
    queue_rows+=("$round|$(label $mode)|$secs|$rate|$posts|$bytes")
    echo "queue round $round $mode: $rate msg/s ($secs s); sink: $posts POSTs, $bytes bytes" >&2
  done
done

# ---- report ------------------------------------------------------------------
echo
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr); gust $PROFILE build; wrk -t$THREADS -c$CONN -d${DUR}s; queue N=$N on $CONNS connections"
echo
echo "| round | HTTP hello | req/s | p50 | p99 | OTLP POSTs | OTLP bytes |"
echo "|---:|---|---:|---:|---:|---:|---:|"
for r in "${http_rows[@]}"; do IFS='|' read -r a b c d e f g <<<"$r"; echo "| $a | $b | $c | $d | $e | $f | $g |"; done
echo
echo "| round | queue send + drain (embedded) | seconds | msg/s | OTLP POSTs | OTLP bytes |"
echo "|---:|---|---:|---:|---:|---:|"
for r in "${queue_rows[@]}"; do IFS='|' read -r a b c d e f <<<"$r"; echo "| $a | $b | $c | $d | $e | $f |"; done
