#!/usr/bin/env bash
# Queue throughput, side by side in one run on this machine:
#   raw async-nats JetStream (the ceiling): work-queue stream, durable pull
#     consumer, batch fetch, ack each; publish+consume together, and consume
#     of a pre-published stream
#   gust + no-op event function (tests/guests/event-noop), queue trigger,
#     on the embedded store and on NATS JetStream, two ways each:
#     - "send + drain": N messages sent through the admin API
#       (POST /_gust/queues/jobs/messages, one message per request, on CONNS
#       keep-alive connections) while the function consumes them; timed from
#       the first send to the queue drained
#     - "pre-loaded drain": the same N sent while the function consumes
#       another queue, then gust.toml points it at `jobs` and POST
#       /_gust/reload starts it; timed from the reload to the queue drained
#     - nats only, "NATS-native publish + drain": N published straight to the
#       queue's JetStream subject (as another service on the same NATS would)
#       while the function consumes; timed from the first publish to drained
# "Drained" = the admin API's queue depth is 0 (polled every 5 ms).
# The client (and nats-server) share the machine's cores with gust.
#
#   bench/queue.sh              # N=20000 CONNS=32 BATCH=64 CONC=64 by default
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
N=${N:-20000}
CONNS=${CONNS:-32}
BATCH=${BATCH:-64}
CONC=${CONC:-64}
RAW_BATCH=${RAW_BATCH:-256}
NATS=${NATS:-nats://127.0.0.1:4222}
WORK=$ROOT/target/bench
mkdir -p "$WORK"
export GUST_CACHE_DIR=$WORK/cache

# ---- builds ------------------------------------------------------------------
cargo build --release -q -p gust
cargo build --release -q --manifest-path bench/queue-raw/Cargo.toml --target-dir target
CARGO_TARGET_DIR=$ROOT/target/guests cargo build --release -q --target wasm32-wasip2 \
  --manifest-path tests/guests/event-noop/Cargo.toml
COMPONENT=$ROOT/target/guests/wasm32-wasip2/release/event_noop.wasm
GUST=$ROOT/target/release/gust
RAW=$ROOT/target/release/queue-raw
(exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null || { echo "nats-server is not listening on 127.0.0.1:4222" >&2; exit 1; }

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

field() { tr ' ' '\n' <<<"$2" | awk -F= -v k="$1" '$1 == k {print $2}'; }

manifest() { # app-name queue
  cat <<TOML
[app]
name = "$1"
[[function]]
name = "noop"
source = "noop.wasm"
trigger = { queue = { queue = "$2", batch_size = $BATCH, concurrency = $CONC, visibility = "60s" } }
TOML
}

rows=()   # "label|timed|secs|rate|send rate|ceiling-key"

# ---- raw ceiling -------------------------------------------------------------
declare -A ceiling
for mode in concurrent preloaded; do
  out=$("$RAW" raw --nats "$NATS" --n "$N" --batch "$RAW_BATCH" --mode "$mode" --ack ack)
  ceiling[$mode]=$(field rate "$out")
  label="raw async-nats (ack)"
  timed=$([ $mode = concurrent ] && echo "publish + consume together" || echo "consume of pre-published")
  rows+=("$label|$timed|$(field secs "$out")|$(field rate "$out")|-|$mode")
  echo "raw $mode: $out" >&2
done
out=$("$RAW" raw --nats "$NATS" --n "$N" --batch "$RAW_BATCH" --mode preloaded --ack double)
rows+=("raw async-nats (double ack: waits for each ack's reply, one at a time)|consume of pre-published|$(field secs "$out")|$(field rate "$out")|-|preloaded")
echo "raw preloaded double-ack: $out" >&2

# ---- gust --------------------------------------------------------------------
port=18200
# Each backend with a fresh instance per message (the default) and with
# `--reuse-instances` (instances kept warm between messages).
for run in embedded nats embedded+reuse nats+reuse; do
  backend=${run%+reuse}
  name="qbench$$${run/+/}"
  app=$WORK/queue-${run/+/-}
  rm -rf "$app" && mkdir -p "$app"
  cp "$COMPONENT" "$app/noop.wasm"
  manifest "$name" parked > "$app/gust.toml"
  extra=()
  [ $backend = nats ] && extra=(--nats "$NATS")
  [ "$run" != "$backend" ] && extra+=(--reuse-instances)
  port=$((port + 1))
  log=$WORK/queue-${run/+/-}.log
  "$GUST" up "$app" --listen 127.0.0.1:$port --quiet --no-watch "${extra[@]}" > "$log" 2>&1 & pid=$!
  pids+=($pid)
  until grep -q ready "$log" 2>/dev/null; do sleep 0.1; kill -0 $pid || { cat "$log"; exit 1; }; done
  url=http://127.0.0.1:$port
  key=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["admin"])' "$app/.gust/keys.json")

  # Pre-loaded: fill `jobs` while `noop` consumes `parked`, then point it at `jobs`.
  out=$("$RAW" send --url "$url" --key "$key" --queue jobs --n "$N" --conns "$CONNS")
  echo "gust $run fill: $out" >&2
  manifest "$name" jobs > "$app/gust.toml"
  out=$("$RAW" drain --url "$url" --key "$key" --queue jobs --reload)
  echo "gust $run pre-loaded drain: $out" >&2
  rows+=("gust $run|pre-loaded drain (reload .. depth 0)|$(field secs "$out")|$(field rate "$out")|-|preloaded")

  # Send + drain, the function consuming all along.
  sleep 1
  out=$("$RAW" send --url "$url" --key "$key" --queue jobs --n "$N" --conns "$CONNS" --wait-drained)
  echo "gust $run send + drain: $out" >&2
  rows+=("gust $run|send + drain (first send .. depth 0)|$(field secs "$out")|$(field rate "$out")|$(field send_rate "$out")|concurrent")

  # NATS only: a NATS-native producer publishes straight to the queue's
  # stream while the function consumes (compare: raw publish + consume).
  if [ $backend = nats ]; then
    sleep 1
    out=$("$RAW" publish --nats "$NATS" --stream-containing "$(tr a-z A-Z <<<"$name")" --queue jobs \
      --n "$N" --url "$url" --key "$key" --wait-drained)
    echo "gust $run native publish + drain: $out" >&2
    rows+=("gust $run|NATS-native publish + drain (first publish .. depth 0)|$(field secs "$out")|$(field rate "$out")|$(field send_rate "$out")|concurrent")
  fi

  rss=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
  echo "gust $run peak RSS $((rss / 1024)) MiB" >&2
  kill $pid; wait $pid 2>/dev/null || true
  if [ $backend = nats ]; then
    "$RAW" delete-streams --nats "$NATS" --containing "$(tr a-z A-Z <<<"$name")" >&2
  fi
done

# ---- report ------------------------------------------------------------------
echo
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr); nats-server $(nats-server --version 2>/dev/null | awk '{print $NF}')"
echo "N=$N messages of 7 bytes; gust queue trigger batch_size=$BATCH concurrency=$CONC; admin API sends on $CONNS connections; raw fetch batch $RAW_BATCH"
echo
echo "| run | timed | seconds | msg/s | send/publish msg/s | vs raw ceiling |"
echo "|---|---|---:|---:|---:|---:|"
for r in "${rows[@]}"; do
  IFS='|' read -r label timed secs rate send which <<<"$r"
  c=${ceiling[$which]}
  ratio=$(awk -v a="$rate" -v b="$c" 'BEGIN {printf "%.0f%%", 100 * a / b}')
  echo "| $label | $timed | $secs | $rate | $send | $ratio of $which ($c msg/s) |"
done
