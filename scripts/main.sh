#!/usr/bin/env bash
# Sets up a fresh machine and runs the main job.
# Today the node is not there yet: this builds `d402` and publishes the template capability
# into ./state/publisher (keygen, template, validate, register, verify). It becomes
# `d402 node` on embedded defaults as the gateway lands.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/setup.sh
ensure_rust_targets
cargo build --locked --release --bin d402
d402=target/release/d402
state=state/publisher
mkdir -p "$state"
$d402 capability template --id example.extract_product --version 1 > "$state/capability.json"
echo "manifest CID: $($d402 capability validate --file "$state/capability.json")"
$d402 capability register --file "$state/capability.json" --state "$state" --namespace example > "$state/registration.json"
$d402 capability verify --file "$state/registration.json" --manifest "$state/capability.json"
