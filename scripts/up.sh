#!/usr/bin/env bash
# Builds gust and brings up an app (default: examples/hello) on embedded
# backends. A folder of apps (`examples`) brings them all up together, each
# under /<app>/ on 127.0.0.1:7070. Installs only what running needs: the
# wasm32-wasip2 Rust target (downloaded while gust compiles). The browser the
# tests use is installed by the test path (scripts/setup.sh --services).
#   scripts/up.sh [app-folder | folder-of-apps] [gust up options...]
set -euo pipefail
cd "$(dirname "$0")/.."
app=${1:-examples/hello}
shift || true
start=$SECONDS
phase() { printf 'up.sh: [%5ss] %s\n' "$((SECONDS - start))" "$*" >&2; }

phase "toolchain: cargo $(cargo --version 2>/dev/null | cut -d' ' -f2 || echo missing)"
command -v cargo >/dev/null || { echo "up.sh: cargo not found; install Rust from https://rustup.rs" >&2; exit 1; }
target_pid=
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx wasm32-wasip2; then
  phase "toolchain: rustup target add wasm32-wasip2 (in the background while gust compiles)"
  rustup target add wasm32-wasip2 >/tmp/gust-up-rustup.$$.log 2>&1 &
  target_pid=$!
fi

phase "building gust (cargo build -p gust: a few minutes the first time, seconds after)"
cargo build -p gust
phase "building gust: done"

if [[ -n "$target_pid" ]]; then
  if wait "$target_pid"; then
    phase "toolchain: wasm32-wasip2 installed"
  else
    cat /tmp/gust-up-rustup.$$.log >&2
    phase "toolchain: FAILED: rustup target add wasm32-wasip2 (gust will retry and report)"
  fi
  rm -f /tmp/gust-up-rustup.$$.log
fi

exec "${CARGO_TARGET_DIR:-target}/debug/gust" up "$app" "$@"
