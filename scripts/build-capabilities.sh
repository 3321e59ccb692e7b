#!/usr/bin/env bash
# Builds every capability component (wasm32-wasip2, profile "wasm") into
# target/wasm32-wasip2/wasm/*.wasm. Tests and the node load them from there.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/setup.sh
ensure_rust_targets
cargo build --locked --target wasm32-wasip2 --profile wasm \
  -p page-to-markdown -p json-transform -p hostile
