#!/usr/bin/env bash
# Builds every guest component used by the host's tests into one shared target
# dir, so dependencies compile once:
#   target/guests/wasm32-wasip2/release/{misbehave,raw_wasip2,hello}.wasm
# Usage: tests/guests/build.sh   (from anywhere; needs the wasm32-wasip2 target)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target/guests}"
rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 \
  || rustup target add wasm32-wasip2
for crate in tests/guests/misbehave tests/guests/raw-wasip2 examples/hello/functions/hello; do
  echo "building $crate" >&2
  (cd "$root/$crate" && cargo build --release --target wasm32-wasip2 --locked)
done
ls -l "$CARGO_TARGET_DIR"/wasm32-wasip2/release/*.wasm >&2
