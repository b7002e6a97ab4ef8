#!/usr/bin/env bash
# Soak: mixed load (HTTP, queue, topic, stream, change feed, SSE) against
# the examples served by one `gust up examples` for DURATION seconds; RSS,
# open file descriptors and p50/p99 latency sampled every WINDOW seconds.
# Writes bench/soak.csv and bench/soak.svg and prints a summary.
#   bench/soak.sh [duration_s=600] [window_s=10] [profile=release|debug]
# The goal: flat memory and fds, no error.
# Knobs: GUST=path runs that binary (no build); WRAP="heaptrack -o F" runs
# gust under a wrapper (a heap profile: heaptrack_print F.zst); OUT=prefix
# writes PREFIX.csv and PREFIX.svg instead of bench/soak.{csv,svg}; ENV="K=V
# ..." sets variables for gust only (e.g. MALLOC_ARENA_MAX=2); ARGS="..."
# adds flags to `gust up` (e.g. --replay-max-age 2m); KEEP_DATA=1 starts
# from the examples' data as an earlier run left it (by default their
# .gust/data, .gust/blobs and .gust/logs are removed first, so that every
# soak starts alike and does not inherit half a GB of an earlier one's).
# Besides RSS and fds, each window reads gust's /metrics (a
# --metrics-listen listener): the heap in use, the memory its bounded
# holders retain (replay, logs, sse, dedupe, the embedded files' page
# caches) and the embedded data files.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-600}
WINDOW=${2:-10}
PROFILE=${3:-release}

OUT=${OUT:-bench/soak}
if [ -z "${GUST:-}" ]; then
  if [ "$PROFILE" = release ]; then
    cargo build --release -q -p gust
  else
    cargo build -q -p gust
  fi
  GUST="${CARGO_TARGET_DIR:-target}/$PROFILE/gust"
fi

if [ -z "${KEEP_DATA:-}" ]; then
  rm -rf examples/*/.gust/data examples/*/.gust/blobs examples/*/.gust/logs
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
MPORT=$(free_port)
LOG=$(mktemp)
# shellcheck disable=SC2086 # WRAP, ENV and ARGS are word lists
env ${ENV:-} ${WRAP:-} "$GUST" up examples --listen "127.0.0.1:$PORT" --metrics-listen "127.0.0.1:$MPORT" \
  --quiet --no-watch ${ARGS:-} >"$LOG" 2>&1 &
STARTED=$!
PID=$STARTED
# SIGINT lets gust (and a wrapper) finish: heaptrack writes its file then.
trap 'kill -INT $PID 2>/dev/null || true; wait $STARTED 2>/dev/null || true; rm -f "$LOG"' EXIT
for _ in $(seq 900); do grep -q ready "$LOG" && break; kill -0 $STARTED || { cat "$LOG"; exit 1; }; sleep 1; done
grep -q ready "$LOG" || { echo "gust up examples never became ready" >&2; cat "$LOG"; exit 1; }
# gust itself, not a wrapper around it: the one listening on this port.
PID=$(pgrep -n -f -- "up examples --listen 127.0.0.1:$PORT ")
echo "soak: gust ($PROFILE) pid $PID on 127.0.0.1:$PORT for ${DURATION}s, sampling every ${WINDOW}s" >&2

sample() { # rss_kib fds heap_in_use_bytes retained_bytes storage_bytes
  printf '%s %s %s\n' "$(awk '/^VmRSS/ {print $2}' /proc/$PID/status)" "$(ls /proc/$PID/fd | wc -l)" \
    "$(curl -sf --max-time 5 "http://127.0.0.1:$MPORT/metrics" | awk '
      /^process_heap_bytes\{state="in_use"\}/ {heap = $2}
      /^gust_retained_bytes\{/ {kept += $2}
      /^gust_storage_file_bytes\{/ {files += $2}
      END {printf "%.0f %.0f %.0f", heap, kept, files}')"
}
RES=$(mktemp)
LOAD=$(mktemp)
echo "0 $(sample)" >"$RES"
python3 bench/soak_load.py "http://127.0.0.1:$PORT" "$DURATION" "$WINDOW" >"$LOAD" &
LOADPID=$!
i=0
while kill -0 $LOADPID 2>/dev/null; do
  sleep "$WINDOW"
  i=$((i + 1))
  kill -0 $PID || { echo "gust died" >&2; cat "$LOG" >&2; exit 1; }
  echo "$((i * WINDOW)) $(sample)" >>"$RES"
done
wait $LOADPID
python3 bench/soak_plot.py "$RES" "$LOAD" "$OUT.csv" "$OUT.svg" \
  "gust $PROFILE, $(nproc) cores, ${DURATION}s, load average $(cut -d' ' -f1-3 /proc/loadavg)"
rm -f "$RES" "$LOAD"
