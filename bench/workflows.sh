#!/usr/bin/env bash
# Durable workflows next to a plain queue chain of the same three functions,
# on the embedded backends and on PostgreSQL, in one run:
#   * latency: one 3-step workflow (`chain`: three `double` activity calls)
#     from POST /_gust/workflows/chain to status `completed`, and one message
#     through three queue-triggered functions (chain-a -> chain-b -> chain-c
#     -> chain-done), from POST to the last queue's depth going up;
#   * throughput: N of each at once; steps/s = 3 N / time until all done.
# Same component for both (tests/guests/workflow-probe), release build.
# Usage: bench/workflows.sh [N=200] [latency-runs=30]
#   POSTGRES=postgres://postgres@127.0.0.1:5432/test (default) ; POSTGRES= skips it
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-200}"
RUNS="${2:-30}"
POSTGRES="${POSTGRES-postgres://postgres@127.0.0.1:5432/test}"
export CARGO_TARGET_DIR="${BENCH_TARGET_DIR:-$PWD/target}"
echo "machine: $(nproc) cores, $(uname -srm); commit $(git rev-parse --short HEAD)"
cargo build --quiet --release -p gust
(cd tests/guests/workflow-probe && CARGO_TARGET_DIR="$PWD/../../../target/guests" \
  cargo build --quiet --release --target wasm32-wasip2)
python3 bench/workflows/drive.py "$CARGO_TARGET_DIR/release/gust" \
  target/guests/wasm32-wasip2/release/workflow_probe.wasm "$N" "$RUNS" "$POSTGRES"
