#!/usr/bin/env bash
# Builds and tests the Solidity contracts in contracts/ with forge (offline, solc-js) and
# writes the artifacts the Rust crates bind (abi, bytecode, deployed bytecode) to
# contracts/artifacts/. With --check, fails if the committed artifacts differ from a fresh
# build (CI runs that).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/setup.sh
ensure_foundry
check=false
[ "${1:-}" = "--check" ] && check=true
cd contracts
node_modules/.bin/forge build --quiet
node_modules/.bin/forge test --quiet
mkdir -p artifacts
status=0
# source file:contract pairs whose artifacts Rust binds
for entry in TestUsdc.sol:TestUsdc TaskEscrow.sol:TaskEscrowFactory TaskEscrow.sol:TaskVault; do
  source=${entry%%:*}
  contract=${entry##*:}
  fresh=$(node -e '
    const a = require(process.argv[1]);
    const out = {abi: a.abi, bytecode: {object: a.bytecode.object}, deployedBytecode: {object: a.deployedBytecode.object}};
    process.stdout.write(JSON.stringify(out, null, 1) + "\n");
  ' "$PWD/out/$source/$contract.json")
  if $check; then
    if ! diff -q <(printf '%s\n' "$fresh") "artifacts/$contract.json" >/dev/null; then
      echo "contracts/artifacts/$contract.json differs from a fresh build; run scripts/build-contracts.sh and commit it" >&2
      status=1
    fi
  else
    printf '%s\n' "$fresh" > "artifacts/$contract.json"
  fi
done
exit $status
