#!/usr/bin/env bash
# Sets up a fresh machine for the test suite and runs all of it: installs what is missing
# (the wasm32-wasip2 Rust target, cargo-component, Chromium, schemathesis, forge/anvil/solc-js
# the official x402 client/server and the Solana MPP client from npm), builds and tests the contracts (failing if a committed artifact drifted), builds
# the capability components the tests load, then runs every test in the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/setup.sh
ensure_rust_targets
ensure_cargo_component
ensure_chromium
ensure_promtool
ensure_schemathesis
ensure_python_buyer
ensure_foundry
ensure_x402_interop
ensure_mpp_interop
./scripts/build-contracts.sh --check
./scripts/build-capabilities.sh
# A one-shot test run gains nothing from incremental caches; they only fill the disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
cargo test --locked --workspace "$@"
