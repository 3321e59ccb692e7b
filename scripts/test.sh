#!/usr/bin/env bash
# Sets up a fresh machine for the test suite and runs all of it: installs what is missing
# (the wasm32-wasip2 Rust target, cargo-component, Chromium, schemathesis), builds the capability components the
# tests load, then runs every test in the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/setup.sh
ensure_rust_targets
ensure_cargo_component
ensure_chromium
ensure_schemathesis
./scripts/build-capabilities.sh
# A one-shot test run gains nothing from incremental caches; they only fill the disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
cargo test --locked --workspace "$@"
