#!/usr/bin/env bash
# A hello function in Rust, JavaScript and Python, side by side in one run:
# apps from the `gust new` templates http-rust, http-js and http-py with the
# function replaced by the same minimal hello in each language (query
# parameter in, text out, through each language's SDK).
# Per language:
#   build      `gust build` (the JS/Python toolchains are installed before)
#   size       the component's size
#   cold       `gust up` with an empty compile cache: start -> ready, then the
#              first request's time, and the sum (start -> first answer)
#   cached     the same with the native code from the compile cache
#   load       wrk on loopback (bounded time): req/s, p50, p99
#   RSS        peak (VmHWM) and current RSS of the gust process after the load
#
#   bench/languages.sh              # DUR=10 CONN=32 THREADS=1 PROFILE=release
#   PROFILE=debug bench/languages.sh   # with target/debug/gust (deps optimised)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DUR=${DUR:-10}
CONN=${CONN:-32}
THREADS=${THREADS:-1}
PROFILE=${PROFILE:-release}
WORK=$ROOT/target/bench/languages
# One cache for the run: toolchains and builds stay between runs, compiled
# native code (*.cwasm at its top) is removed before each cold start.
export GUST_CACHE_DIR=$ROOT/target/bench/languages-cache
mkdir -p "$WORK" "$GUST_CACHE_DIR"

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
if [ "$PROFILE" = release ]; then
  cargo build --release -q -p gust
else
  cargo build -q -p gust
fi
GUST=$ROOT/target/$PROFILE/gust

wait_port() { for _ in $(seq 1 3000); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.01; done; return 1; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.0f", (b - a) / 1000000}'; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# Starts gust (pid in $pid); sets R_READY (start -> ready, ms), R_FIRST
# (the first request, ms) and R_TOTAL (start -> first answer, ms).
start_once() { # app port
  local app=$1 port=$2 log=$WORK/ready.log start ready t done_at
  : > "$log"
  start=$(date +%s%N)
  "$GUST" up "$app" --listen "127.0.0.1:$port" --quiet --no-watch > "$log" 2>&1 & pid=$!
  pids+=("$pid")
  until grep -q ready "$log" 2>/dev/null; do
    sleep 0.002
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
  done
  ready=$(date +%s%N)
  t=$(curl -s -o /dev/null -w '%{time_total}' "http://127.0.0.1:$port/hello?name=bench")
  done_at=$(date +%s%N)
  R_READY=$(ms "$start" "$ready")
  R_FIRST=$(awk -v t="$t" 'BEGIN {printf "%.1f", t*1000}')
  R_TOTAL=$(ms "$start" "$done_at")
}

rows=()
port=18200
for lang in rust js py; do
  app=$WORK/hello-$lang
  rm -rf "$app"
  "$GUST" new "http-$lang" "$app" >/dev/null
  # Toolchain installs (first use only) and the Rust SDK's dependencies are
  # not part of the build time: build the template once first.
  "$GUST" build "$app" >/dev/null 2>&1 || true
  # The same minimal hello in each language (the templates also count
  # calls in kv, which measures the store's fsync, not the language).
  case $lang in
    rust) cat > "$app/functions/hello/src/lib.rs" <<'RS'
use gust_sdk::http::{Request, Response};

#[gust_sdk::http]
fn handle(req: Request) -> Response {
    let name = req.query("name").filter(|n| !n.is_empty()).unwrap_or("world");
    Response::ok(format!("hello, {name}!"))
}
RS
    ;;
    js) cat > "$app/functions/hello/src/index.js" <<'JS'
export default {
  fetch(request) {
    const name = new URL(request.url).searchParams.get("name") || "world";
    return new Response(`hello, ${name}!`);
  },
};
JS
    ;;
    py) cat > "$app/functions/hello/app.py" <<'PY'
import gust


@gust.http
def handle(request: gust.Request) -> gust.Response:
    return gust.Response(f"hello, {request.query.get('name') or 'world'}!")
PY
    ;;
  esac
  rm -rf "$app/.gust"
  b0=$(date +%s%N)
  "$GUST" build "$app" > "$WORK/build-$lang.log" 2>&1 || { cat "$WORK/build-$lang.log"; exit 1; }
  b1=$(date +%s%N)
  build_s=$(awk -v a="$b0" -v b="$b1" 'BEGIN {printf "%.1f", (b - a) / 1e9}')
  size=$(du -b "$app"/.gust/build/*.wasm | awk '{printf "%.1f MB", $1 / 1e6}')

  rm -f "$GUST_CACHE_DIR"/*.cwasm
  port=$((port + 1)); start_once "$app" $port
  cold_ready=$R_READY cold_first=$R_FIRST cold_total=$R_TOTAL
  kill "$pid"; wait "$pid" 2>/dev/null || true
  port=$((port + 1)); start_once "$app" $port
  warm_ready=$R_READY warm_first=$R_FIRST warm_total=$R_TOTAL

  url="http://127.0.0.1:$port/hello?name=bench"
  wrk -t"$THREADS" -c"$CONN" -d2s "$url" >/dev/null   # warm-up
  out=$(wrk -t"$THREADS" -c"$CONN" -d"${DUR}s" --latency "$url")
  rps=$(awk '/Requests\/sec/ {printf "%.0f", $2}' <<<"$out")
  p50=$(awk '/^ +50%/ {print $2}' <<<"$out")
  p99=$(awk '/^ +99%/ {print $2}' <<<"$out")
  errors=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr '\n' ' ')
  hwm=$(awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$pid/status")
  rss=$(awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$pid/status")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rows+=("$lang|${build_s} s|$size|$cold_ready + $cold_first = $cold_total ms|$warm_ready + $warm_first = $warm_total ms|$rps|$p50|$p99|$hwm / $rss MiB|${errors:-none}")
  echo "$lang: built in ${build_s}s ($size); cold $cold_total ms, cached $warm_total ms (first request $warm_first ms); $rps req/s; RSS $hwm/$rss MiB $errors" >&2
done

echo
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr); gust $PROFILE build; wrk -t$THREADS -c$CONN -d${DUR}s on 127.0.0.1"
echo
echo "| hello in | build | component | cold: ready + first request = total | cached: ready + first request = total | req/s | p50 | p99 | RSS peak / after load | errors |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
for r in "${rows[@]}"; do IFS='|' read -r a b c d e f g h i j <<<"$r"; echo "| $a | $b | $c | $d | $e | $f | $g | $h | $i | $j |"; done
