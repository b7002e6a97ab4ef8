#!/usr/bin/env bash
# Builds gust and brings up an app (default: examples/hello) on embedded
# backends, installing the wasm32-wasip2 target first if needed.
#   scripts/up.sh [app-folder] [gust up options...]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
app=${1:-examples/hello}
shift || true
cargo build --quiet -p gust
exec target/debug/gust up "$app" "$@"
