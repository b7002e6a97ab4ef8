#!/usr/bin/env bash
# Builds gust and brings up an app (default: examples/hello) on embedded
# backends, installing the wasm32-wasip2 target first if needed. A folder of
# apps (`examples`) brings them all up together, each under /<app>/ on
# 127.0.0.1:7070.
#   scripts/up.sh [app-folder | folder-of-apps] [gust up options...]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
app=${1:-examples/hello}
shift || true
cargo build --quiet -p gust
exec target/debug/gust up "$app" "$@"
