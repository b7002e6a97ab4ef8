#!/usr/bin/env bash
# The embedded engines side by side: redb vs SQLite (rusqlite), durable
# single-record commits, grouped commits and point reads, in one run
# (see crates/gust-backends/examples/engine_compare.rs).
# Usage: bench/engines.sh [single-writes=2000] [grouped-writes=100000]
set -euo pipefail
cd "$(dirname "$0")/.."
echo "machine: $(nproc) cores, $(uname -srm); commit $(git rev-parse --short HEAD); $(df -T . | awk 'NR==2 {print $2}') filesystem"
cargo run --quiet --release -p gust-backends --example engine_compare -- "${1:-2000}" "${2:-100000}"
