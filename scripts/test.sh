#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests beside the code, the
# guest SDK's tests, and end-to-end tests that start the real `gust` binary.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

scripts/setup.sh --services

echo "== fmt"
cargo fmt --all --check
echo "== clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== guest SDK unit tests (native)"
(cd sdk/rust/gust-sdk && CARGO_TARGET_DIR="$PWD/../../../target" cargo test --quiet)
echo "== workspace tests (unit + end-to-end)"
if cargo nextest --version >/dev/null 2>&1; then
  # Two tests at a time across all binaries, every failure reported, a
  # failed test tried once more (see .config/nextest.toml). The crates'
  # doc comments hold no runnable examples (only toml/text blocks), so
  # there are no doc tests to run.
  cargo nextest run --workspace
else
  echo "test: cargo-nextest is not installed; running cargo test" >&2
  cargo test --workspace --no-fail-fast
fi
