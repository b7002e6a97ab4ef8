#!/usr/bin/env bash
# Gust's engine providers side by side with the raw client doing the same
# work, in one run: sql round trips (PostgreSQL, MariaDB), table write +
# change-feed lag (PostgreSQL) and stream append/consume (NATS), kv put/get
# (Redis, NATS KV, PostgreSQL). Needs the local services
# (scripts/setup.sh --services). Results: bench/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "machine: $(nproc) cores, $(uname -srm); commit $(git rev-parse --short HEAD)"
for example in sql_roundtrip feeds_bench kv_bench; do
  echo "== $example"
  cargo run --quiet --release -p gust-backends --example "$example"
done
