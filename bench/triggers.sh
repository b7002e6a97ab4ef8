#!/usr/bin/env bash
# Timer firing lateness and change-feed lag, each next to a baseline in the
# same run (see crates/gust-triggers/examples/trigger_latency.rs).
# Usage: bench/triggers.sh [timer-seconds=30] [feed-writes=5000]
set -euo pipefail
cd "$(dirname "$0")/.."
echo "machine: $(nproc) cores, $(uname -srm); commit $(git rev-parse --short HEAD)"
cargo run --quiet --release -p gust-triggers --example trigger_latency -- "${1:-30}" "${2:-5000}"
