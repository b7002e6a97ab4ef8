#!/usr/bin/env bash
# First run, timed: clones REV of this repository into a fresh folder and runs
# `scripts/up.sh APPS` there until the `ready` line, printing every output line
# with the seconds since the clone started, then stops gust. The cargo
# registry cache (~/.cargo/registry) is used as it is; the clone gets its own
# target folder and its own gust cache (XDG_CACHE_HOME), so gust, the guests
# and the components all build from nothing.
#   bench/first_run.sh [REV=HEAD] [APPS=examples]
# Prints the machine load before and after. Leaves the clone under /tmp.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
rev=${1:-HEAD}
apps=${2:-examples}
work=$(mktemp -d /tmp/gust-first-run.XXXXXX)
echo "first_run: $(git -C "$repo" rev-parse --short "$rev") into $work; load: $(uptime | sed 's/.*load average: //')"
start=$(date +%s.%N)
stamp() { while IFS= read -r line; do printf '%7.1f  %s\n' "$(echo "$(date +%s.%N) - $start" | bc)" "$line"; done; }
{
  git clone --quiet --no-hardlinks "$repo" "$work/gust"
  git -C "$work/gust" checkout --quiet "$rev"
  echo "cloned"
} 2>&1 | stamp
cd "$work/gust"
unset CARGO_TARGET_DIR GUST_CACHE_DIR
export XDG_CACHE_HOME="$work/cache" CARGO_TERM_PROGRESS_WHEN=never
fifo="$work/out"
mkfifo "$fifo"
scripts/up.sh "$apps" --listen 127.0.0.1:0 --mqtt-listen 127.0.0.1:0 --no-watch --quiet >"$fifo" 2>&1 &
pid=$!
while IFS= read -r line; do
  printf '%7.1f  %s\n' "$(echo "$(date +%s.%N) - $start" | bc)" "$line"
  if [[ "$line" == *" ready on "* ]]; then break; fi
done <"$fifo" | grep -v -E '^ *[0-9.]+ +(Compiling|Downloaded|Downloading) ' || true
kill "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
echo "first_run: done; load: $(uptime | sed 's/.*load average: //')"
