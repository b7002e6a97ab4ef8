#!/usr/bin/env bash
# Gateway overhead: req/s, p50 and p99 of requests straight to an upstream
# and through the gateway to the same upstream, in one run: once with one
# connection (added latency) and once with many (throughput).
#   bench/gateway.sh [duration=10s] [connections="1 32"] [wrk threads=1]
# GATEWAY_BENCH_BIN=path runs that gateway_bench binary instead of building.
# PIN=1 (needs taskset and 2+ cores): the upstream runs in its own process
# pinned to core 0 together with wrk, and the gateway and the reference
# proxies in another process pinned to core 1, one worker thread each: the
# gateway gets a core of its own, as on its own machine. "bench process"
# CPU then adds up both processes. Without PIN, one process holds all
# (2 worker threads) and nothing is pinned.
# CALLGRIND=1 (needs valgrind and python3) runs no wrk: it counts the
# instructions per request of the upstream alone, the bare proxy and the
# gateway (the bench process on one worker thread under callgrind, a
# fixed number of sequential keep-alive requests, CALLGRIND_REQUESTS=2000,
# after 300 to warm up; N and 2N requests differenced, so start-up and
# warm-up cancel out). Deterministic whatever else runs on the machine.
# Also prints CPU time per request: of the bench process (upstream alone for
# "direct"; gateway + upstream for "gateway", both share one runtime), split
# into user and kernel time, and of wrk, read from /proc around each run. On
# a machine where wrk, gateway and upstream share the cores, these bound the
# achievable ratio:
#   gateway req/s / direct req/s <= (wrk + upstream) / (wrk + gateway + upstream).
# The kernel part is mostly the socket reads and writes: the gateway makes
# two round trips per request where the upstream makes one.
# Also prints the gateway with `http2 = true` to the same upstream (h2c),
# and two reference proxies: a bare hyper proxy and a raw TCP relay, the
# floor of any proxy that reads and writes each request on both sides.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10s}
CONNS_LIST=${2:-"1 32"}
THREADS=${3:-1}

if [ -n "${GATEWAY_BENCH_BIN:-}" ]; then # compare another build, e.g. the one before a change
  BIN=$GATEWAY_BENCH_BIN
else
  cargo build --release -q -p gust-gateway --example gateway_bench
  BIN="${CARGO_TARGET_DIR:-target}/release/examples/gateway_bench"
fi

wait_for() { # key file [tenths of a second]: waits until the process printed KEY=
  for _ in $(seq "${3:-50}"); do grep -q "^$1=" "$2" && return 0; sleep 0.1; done
  echo "gateway_bench printed no $1=" >&2
  exit 1
}

if [ "${CALLGRIND:-0}" = 1 ]; then
  command -v valgrind >/dev/null || { echo "CALLGRIND=1 needs valgrind: apt-get install valgrind" >&2; exit 1; }
  N=${CALLGRIND_REQUESTS:-2000}
  # url count: sequential GETs as wrk sends them, over one keep-alive connection
  CLIENT='
import socket, sys
from urllib.parse import urlparse
u = urlparse(sys.argv[1])
req = ("GET " + (u.path or "/") + " HTTP/1.1\r\nHost: " + u.netloc + "\r\n\r\n").encode()
s = socket.create_connection((u.hostname, u.port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
buf = b""
for _ in range(int(sys.argv[2])):
    s.sendall(req)
    while True:
        i = buf.find(b"\r\n\r\n")
        if i >= 0:
            head = buf[:i].decode("latin-1").lower()
            assert head.startswith("http/1.1 200"), head
            n = int(head.split("content-length:")[1].split("\r\n")[0])
            if len(buf) >= i + 4 + n:
                buf = buf[i + 4 + n:]
                break
        d = s.recv(65536)
        assert d, "connection closed"
        buf += d
'
  ir() { # key requests -> instructions of the bench process for that many requests
    local dir vpid url
    dir=$(mktemp -d)
    GW_BENCH_THREADS=1 valgrind --tool=callgrind --callgrind-out-file="$dir/out" "$BIN" >"$dir/urls" 2>"$dir/log" &
    vpid=$!
    wait_for GATEWAY "$dir/urls" 600
    url=$(sed -n "s/^$1=//p" "$dir/urls")
    python3 -c "$CLIENT" "$url" 300
    callgrind_control -z "$vpid" >/dev/null 2>&1
    python3 -c "$CLIENT" "$url" "$2"
    callgrind_control -d "$vpid" >/dev/null 2>&1
    kill "$vpid"
    wait "$vpid" 2>/dev/null || true
    awk '/^(summary|totals):/ {print $2; exit}' "$dir/out.1"
    rm -rf "$dir"
  }
  echo "callgrind, $N and $((2 * N)) sequential requests over one connection, bench process on 1 worker thread"
  printf '%-12s %14s\n' "target" "instr/request"
  for KEY in UPSTREAM BARE_PROXY GATEWAY; do
    A=$(ir "$KEY" "$N")
    B=$(ir "$KEY" $((2 * N)))
    printf '%-12s %14s\n' "$KEY" "$(( (B - A) / N ))"
  done
  exit 0
fi

command -v wrk >/dev/null || { echo "wrk is needed: scripts/setup.sh --bench (or apt-get install wrk)" >&2; exit 1; }

OUT=$(mktemp)
UP_OUT=$(mktemp)
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; rm -f "$OUT" "$UP_OUT"' EXIT
WRK=(wrk)
if [ "${PIN:-0}" = 1 ]; then
  command -v taskset >/dev/null || { echo "PIN=1 needs taskset (util-linux)" >&2; exit 1; }
  [ "$(nproc)" -ge 2 ] || { echo "PIN=1 needs 2 cores" >&2; exit 1; }
  MODE="PIN=1: upstream + wrk pinned to core 0, gateway + reference proxies pinned to core 1 (two processes, 1 worker thread each)"
  GW_BENCH_ROLE=upstream GW_BENCH_THREADS=1 taskset -c 0 "$BIN" >"$UP_OUT" &
  PIDS+=($!)
  wait_for UPSTREAM "$UP_OUT"
  GW_BENCH_UPSTREAM=$(sed -n 's/^UPSTREAM=//p' "$UP_OUT") GW_BENCH_THREADS=1 taskset -c 1 "$BIN" >"$OUT" &
  PIDS+=($!)
  WRK=(taskset -c 0 wrk)
else
  MODE="default: upstream, gateway and reference proxies in one process (2 worker threads), nothing pinned"
  "$BIN" >"$OUT" &
  PIDS+=($!)
fi
echo "mode: $MODE" >&2
wait_for GATEWAY "$OUT"
UPSTREAM=$(sed -n 's/^UPSTREAM=//p' "$OUT")
GATEWAY=$(sed -n 's/^GATEWAY=//p' "$OUT")
GATEWAY_H2=$(sed -n 's/^GATEWAY_H2=//p' "$OUT")
BARE_PROXY=$(sed -n 's/^BARE_PROXY=//p' "$OUT")
RAW_RELAY=$(sed -n 's/^RAW_RELAY=//p' "$OUT")

ticks() { # utime stime, added up over the bench processes
  local p u=0 s=0 a b
  for p in "${PIDS[@]}"; do
    read -r a b < <(awk '{print $14, $15}' "/proc/$p/stat")
    u=$((u + a)) s=$((s + b))
  done
  echo "$u $s"
}
HZ=$(getconf CLK_TCK)

run() { # url connections -> "req/s p50 p99 bench-cpu-us/req wrk-cpu-us/req bench-user/sys-us/req"
  local r t0 t1 w
  t0=$(ticks)
  r=$(TIMEFORMAT='%U %S'; { time "${WRK[@]}" -t"$THREADS" -c"$2" -d"$DURATION" --latency "$1" 2>&1; } 2>&1)
  t1=$(ticks)
  w=$(tail -n1 <<<"$r")
  r=$(sed '$d' <<<"$r")
  echo "$r" >&2
  local rps total
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$r")
  total=$(awk '/requests in/ {print $1}' <<<"$r")
  printf '%s %s %s %s %s %s\n' "$rps" \
    "$(awk '$1=="50%" {print $2}' <<<"$r")" \
    "$(awk '$1=="99%" {print $2}' <<<"$r")" \
    "$(awk -v a="$t0" -v b="$t1" -v hz="$HZ" -v n="$total" 'BEGIN {split(a, x, " "); split(b, y, " "); printf "%.1f", (y[1] + y[2] - x[1] - x[2]) / hz * 1e6 / n}')" \
    "$(awk -v u="${w% *}" -v s="${w#* }" -v n="$total" 'BEGIN {printf "%.1f", (u + s) * 1e6 / n}')" \
    "$(awk -v a="$t0" -v b="$t1" -v hz="$HZ" -v n="$total" 'BEGIN {split(a, x, " "); split(b, y, " "); printf "%.1f/%.1f", (y[1] - x[1]) / hz * 1e6 / n, (y[2] - x[2]) / hz * 1e6 / n}')"
}

to_us() { # "165.00us" | "0.93ms" | "1.2s" -> microseconds
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) m = 1; else if (v ~ /ms$/) m = 1000; else m = 1000000; printf "%.0f", n * m }'
}

"${WRK[@]}" -t1 -c4 -d1s "$GATEWAY" >/dev/null # warm the pools
"${WRK[@]}" -t1 -c4 -d1s "$GATEWAY_H2" >/dev/null
ROWS=()
CPU=()
H2=()
FLOORS=()
for C in $CONNS_LIST; do
  read -r D_RPS D_P50 D_P99 D_CPU D_WRK D_SPLIT < <(run "$UPSTREAM" "$C")
  read -r G_RPS G_P50 G_P99 G_CPU G_WRK G_SPLIT < <(run "$GATEWAY" "$C")
  read -r H_RPS H_P50 _ H_CPU _ H_SPLIT < <(run "$GATEWAY_H2" "$C")
  ADDED=$(( $(to_us "$G_P50") - $(to_us "$D_P50") ))
  RATIO=$(awk -v g="$G_RPS" -v d="$D_RPS" 'BEGIN {printf "%.2fx", g / d}')
  ROWS+=("$(printf '%-6s %14s %10s %10s %14s %10s %10s %12s %7s' "$C" "$D_RPS" "$D_P50" "$D_P99" "$G_RPS" "$G_P50" "$G_P99" "${ADDED}us" "$RATIO")")
  CPU+=("$(printf '%-6s %16s %12s %16s %12s %18s %18s' "$C" "$D_CPU" "$D_WRK" "$G_CPU" "$G_WRK" "$D_SPLIT" "$G_SPLIT")")
  read -r B_RPS _ _ B_CPU _ B_SPLIT < <(run "$BARE_PROXY" "$C")
  read -r R_RPS _ _ R_CPU _ R_SPLIT < <(run "$RAW_RELAY" "$C")
  FLOORS+=("$(printf '%-6s %12s %7s %12s %14s %12s %7s %12s %14s' "$C" \
    "$B_RPS" "$(awk -v g="$B_RPS" -v d="$D_RPS" 'BEGIN {printf "%.2fx", g / d}')" "$B_CPU" "$B_SPLIT" \
    "$R_RPS" "$(awk -v g="$R_RPS" -v d="$D_RPS" 'BEGIN {printf "%.2fx", g / d}')" "$R_CPU" "$R_SPLIT")")
  H2+=("$(printf '%-6s %14s %10s %7s %12s %14s' "$C" "$H_RPS" "$H_P50" "$(awk -v g="$H_RPS" -v d="$D_RPS" 'BEGIN {printf "%.2fx", g / d}')" "$H_CPU" "$H_SPLIT")")
done

echo
echo "wrk -t$THREADS -d$DURATION --latency, $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "mode: $MODE"
printf '%-6s %14s %10s %10s %14s %10s %10s %12s %7s\n' "conns" "direct req/s" "p50" "p99" "gateway req/s" "p50" "p99" "added p50" "ratio"
printf '%s\n' "${ROWS[@]}"
echo "CPU per request, us (bench process = upstream, or gateway + upstream):"
printf '%-6s %16s %12s %16s %12s %18s %18s\n' "conns" "direct process" "direct wrk" "gateway process" "gateway wrk" "direct user/sys" "gateway user/sys"
printf '%s\n' "${CPU[@]}"
echo "Gateway speaking HTTP/2 (h2c) to the same upstream:"
printf '%-6s %14s %10s %7s %12s %14s\n' "conns" "req/s" "p50" "ratio" "process CPU" "user/sys"
printf '%s\n' "${H2[@]}"
echo "Reference proxies to the same upstream: a bare hyper proxy (no gateway logic) and a raw TCP relay (no HTTP):"
printf '%-6s %12s %7s %12s %14s %12s %7s %12s %14s\n' "conns" "bare req/s" "ratio" "process CPU" "user/sys" "relay req/s" "ratio" "process CPU" "user/sys"
printf '%s\n' "${FLOORS[@]}"
