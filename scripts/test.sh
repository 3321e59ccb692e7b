#!/usr/bin/env bash
# Sets up a fresh machine for the test suite and runs all of it.
# Installs only what is missing: the wasm32-wasip2 Rust target (capability components).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/setup.sh
ensure_rust_targets
cargo test --locked "$@"
