#!/usr/bin/env bash
# HTTP hello, side by side in one run on this machine:
#   native axum  |  wasmtime serve 48 (fresh instance per request)
#   gust (fresh instance per request)  |  gust --reuse-instances
# plus Gust's first-response time after start and peak RSS with 1,000
# deployed functions. Every server answers the same `raw-wasip2` component
# (the native one mimics its answer). Load: wrk on loopback, bounded time.
#
#   bench/http.sh            # DUR=10 CONN=32 THREADS=1 by default
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DUR=${DUR:-10}
CONN=${CONN:-32}
THREADS=${THREADS:-1}
FUNCS=${FUNCS:-1000}
WORK=$ROOT/target/bench
TOOLS=$ROOT/target/bench-tools
mkdir -p "$WORK"
export GUST_CACHE_DIR=$WORK/cache

# ---- tools and builds ------------------------------------------------------
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
[ -x "$TOOLS/bin/wasmtime" ] || cargo install wasmtime-cli --version 48.0.8 --locked --root "$TOOLS"
scripts/setup.sh
cargo build --release -q -p gust
cargo build --release -q --manifest-path bench/native-hello/Cargo.toml --target-dir target
CARGO_TARGET_DIR=$ROOT/target/guests cargo build --release -q --target wasm32-wasip2 \
  --manifest-path tests/guests/raw-wasip2/Cargo.toml
COMPONENT=$ROOT/target/guests/wasm32-wasip2/release/raw_wasip2.wasm
GUST=$ROOT/target/release/gust

APP=$WORK/hello-app
rm -rf "$APP" && mkdir -p "$APP"
cp "$COMPONENT" "$APP/hello.wasm"
cat > "$APP/gust.toml" <<TOML
[app]
name = "bench"
[[function]]
name = "hello"
source = "hello.wasm"
trigger = { http = { route = "/hello", auth = "anonymous" } }
limits = { concurrency = 1024 }
TOML

wait_port() { for _ in $(seq 1 600); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

results=()
load() { # name port
  local name=$1 port=$2 out
  wait_port "$port"
  curl -sf "http://127.0.0.1:$port/hello" >/dev/null
  wrk -t"$THREADS" -c"$CONN" -d2s "http://127.0.0.1:$port/hello" >/dev/null   # warm-up
  out=$(wrk -t"$THREADS" -c"$CONN" -d"${DUR}s" --latency "http://127.0.0.1:$port/hello")
  local rps p50 p99 errors
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '/^ +50%/ {print $2}' <<<"$out")
  p99=$(awk '/^ +99%/ {print $2}' <<<"$out")
  errors=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr '\n' ' ')
  results+=("$name|$rps|$p50|$p99|${errors:-none}")
  echo "$name: $rps req/s, p50 $p50, p99 $p99 ${errors}" >&2
}

target/release/native-hello 127.0.0.1:18081 >/dev/null & pids+=($!)
load "native axum" 18081
kill "${pids[-1]}"

"$TOOLS/bin/wasmtime" serve -S cli=y --addr 127.0.0.1:18082 "$COMPONENT" >/dev/null 2>&1 & pids+=($!)
load "wasmtime serve 48" 18082
kill "${pids[-1]}"

"$GUST" up "$APP" --listen 127.0.0.1:18083 --quiet --no-watch >/dev/null & pids+=($!)
load "gust (fresh instance)" 18083
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true

"$GUST" up "$APP" --listen 127.0.0.1:18084 --quiet --no-watch --reuse-instances >/dev/null & pids+=($!)
load "gust --reuse-instances" 18084
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true

# ---- first response after start (component precompiled in the cache) ------
first=()
for i in 1 2 3 4 5; do
  port=$((18090 + i))
  start=$(date +%s%N)
  "$GUST" up "$APP" --listen 127.0.0.1:$port --quiet --no-watch > "$WORK/ready.$i" & pid=$!
  until grep -q ready "$WORK/ready.$i" 2>/dev/null; do sleep 0.005; done
  ready=$(date +%s%N)
  t=$(curl -s -o /dev/null -w '%{time_total}' "http://127.0.0.1:$port/hello")
  first+=("$(( (ready - start) / 1000000 )) ms to ready, first response $(awk -v t="$t" 'BEGIN {printf "%.2f", t*1000}') ms")
  kill $pid; wait $pid 2>/dev/null || true
done

# ---- peak RSS with $FUNCS deployed functions (distinct components) --------
MANY=$WORK/many-app
rm -rf "$MANY" && mkdir -p "$MANY/c"
{
  echo '[app]'; echo 'name = "many"'
  for i in $(seq 1 "$FUNCS"); do
    printf '[[function]]\nname = "f%d"\nsource = "c/f%d.wasm"\ntrigger = { http = { route = "/f%d", auth = "anonymous" } }\n' "$i" "$i" "$i"
  done
} > "$MANY/gust.toml"
# Distinct bytes per function (a trailing custom section), so nothing is shared by hash.
python3 - "$COMPONENT" "$MANY/c" "$FUNCS" <<'PY'
import sys
src, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
base = open(src, 'rb').read()
def leb(v):
    b = bytearray()
    while True:
        x = v & 0x7f; v >>= 7
        b.append(x | (0x80 if v else 0))
        if not v: return bytes(b)
for i in range(1, n + 1):
    name = b'gust-bench'; payload = str(i).encode()
    body = leb(len(name)) + name + payload
    open(f'{out}/f{i}.wasm', 'wb').write(base + b'\x00' + leb(len(body)) + body)
PY
rss_run() { # label
  local log=$WORK/many.log start
  start=$(date +%s)
  "$GUST" up "$MANY" --listen 127.0.0.1:18099 --quiet --no-watch > "$log" 2>&1 & local pid=$!
  until grep -q ready "$log" 2>/dev/null; do sleep 0.2; kill -0 $pid || { cat "$log"; exit 1; }; done
  local secs=$(( $(date +%s) - start ))
  for i in 1 500 "$FUNCS"; do curl -sf "http://127.0.0.1:18099/f$i" >/dev/null; done
  local hwm=$(awk '/VmHWM/ {print $2}' /proc/$pid/status) rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
  kill $pid; wait $pid 2>/dev/null || true
  echo "$1: ready in ${secs}s, peak RSS $((hwm / 1024)) MiB, RSS after 3 requests $((rss / 1024)) MiB"
}
many_cold=$(rss_run "first start (compiles $FUNCS components)")
many_warm=$(rss_run "second start (all from the compile cache)")

# ---- report ----------------------------------------------------------------
echo
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr); wrk -t$THREADS -c$CONN -d${DUR}s on 127.0.0.1"
echo
echo "| server | req/s | p50 | p99 | errors |"
echo "|---|---:|---:|---:|---|"
for r in "${results[@]}"; do IFS='|' read -r n a b c d <<<"$r"; echo "| $n | $a | $b | $c | $d |"; done
echo
echo "first response after start (precompiled), 5 runs:"
for f in "${first[@]}"; do echo "- $f"; done
echo
echo "$FUNCS functions:"
echo "- $many_cold"
echo "- $many_warm"
