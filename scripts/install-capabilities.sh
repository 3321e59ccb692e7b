#!/usr/bin/env bash
# Installs every built capability component into a node's store (default state/node):
# signs an implementation package with the node's wallet and installs it (digest-checked).
# Usage: scripts/install-capabilities.sh [D402_BINARY] [STATE_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
d402=${1:-target/release/d402}
state=${2:-state/node}
mkdir -p "$state"
[ -f "$state/wallet.json" ] || "$d402" keygen --out "$state/wallet.json" >/dev/null
for manifest in capabilities/*/manifest.json; do
  crate=$(basename "$(dirname "$manifest")")
  wasm="target/wasm32-wasip2/wasm/${crate//-/_}.wasm"
  [ -f "$wasm" ] || { echo "missing $wasm: run scripts/build-capabilities.sh" >&2; exit 1; }
  package="$state/packages/$crate.json"
  mkdir -p "$state/packages"
  "$d402" capability implementation create --manifest "$manifest" --wasm "$wasm" \
    --key "$state/wallet.json" --out "$package" >/dev/null
  "$d402" capability implementation install --file "$package" --wasm "$wasm" \
    --manifest "$manifest" --state "$state"
done
