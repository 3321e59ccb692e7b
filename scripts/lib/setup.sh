# Shared set-up steps for scripts/main.sh and scripts/test.sh (sourced, not run).

# The wasm32-wasip2 target builds capability components.
ensure_rust_targets() {
  if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    echo "setup: adding the wasm32-wasip2 Rust target" >&2
    rustup target add wasm32-wasip2
  fi
}

# cargo-component: the second supported way to build a capability (tested).
ensure_cargo_component() {
  if ! cargo component --version >/dev/null 2>&1; then
    echo "setup: installing cargo-component 0.21.1 (takes ~10 minutes on 2 cores)" >&2
    cargo install --locked cargo-component --version 0.21.1
  fi
}

# Debian's Chromium for the browser provider's rendering tests (never downloaded at run time).
ensure_chromium() {
  if [ ! -x /usr/bin/chromium ] && [ -z "${D402_CHROMIUM:-}" ]; then
    echo "setup: installing Debian's chromium" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
}

# Debian's promtool (package prometheus) checks the node's /metrics (host/cli/tests/ops_cli.rs).
ensure_promtool() {
  if ! command -v promtool >/dev/null 2>&1; then
    echo "setup: installing Debian's prometheus package (for promtool)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  fi
}

# The Python buyer example (examples/python-buyer) needs `cryptography` for ed25519; a venv
# under target/ gets it (pinned) when the system Python lacks it. Exports D402_PYTHON, which
# host/cli/tests/python_buyer_cli.rs runs the example with.
ensure_python_buyer() {
  local venv=target/python-buyer
  if python3 -c "import cryptography" >/dev/null 2>&1; then
    export D402_PYTHON=python3
  else
    if ! "$venv/bin/python" -c "import cryptography" >/dev/null 2>&1; then
      echo "setup: installing cryptography 48.0.0 into $venv" >&2
      rm -rf "$venv"
      python3 -m venv "$venv"
      "$venv/bin/pip" install --quiet --disable-pip-version-check "cryptography==48.0.0"
    fi
    export D402_PYTHON="$PWD/$venv/bin/python"
  fi
}

# schemathesis (PyPI, pinned) checks the gateway's /openapi.json against a live node
# (host/cli/tests/openapi_cli.rs). Installed into a venv under target/ when no working one
# is found; exports D402_SCHEMATHESIS, which the test runs.
ensure_schemathesis() {
  local venv=target/schemathesis
  if "$venv/bin/schemathesis" --version >/dev/null 2>&1; then
    export D402_SCHEMATHESIS="$PWD/$venv/bin/schemathesis"
  elif schemathesis --version >/dev/null 2>&1; then
    D402_SCHEMATHESIS="$(command -v schemathesis)"
    export D402_SCHEMATHESIS
  else
    echo "setup: installing schemathesis 4.32.5 into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==4.32.5"
    "$venv/bin/schemathesis" --version >/dev/null
    export D402_SCHEMATHESIS="$PWD/$venv/bin/schemathesis"
  fi
}

# Foundry's forge and anvil and solc-js from npm (contracts/package-lock.json): forge builds
# and tests the contracts offline; tests start anvil as the local EVM chain. Exports
# D402_ANVIL, which the EVM tests and `d402 devnet` run.
ensure_foundry() {
  if [ ! -x contracts/node_modules/.bin/forge ] || [ ! -x contracts/node_modules/.bin/anvil ]; then
    echo "setup: installing forge, anvil and solc-js from npm into contracts/node_modules" >&2
    (cd contracts && npm ci --no-audit --no-fund --loglevel=error)
  fi
  D402_ANVIL="$PWD/contracts/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
  export D402_ANVIL
}

# The official x402 TypeScript client and server (npm @x402/*, pinned in
# interop/x402/package-lock.json) for the interop tests.
ensure_mpp_interop() {
  if [ ! -d interop/mpp/node_modules/@solana/mpp ] || [ ! -d interop/mpp/node_modules/mppx ]; then
    echo "setup: installing the official Solana MPP client from npm into interop/mpp/node_modules" >&2
    (cd interop/mpp && npm ci --no-audit --no-fund --loglevel=error)
  fi
}

ensure_x402_interop() {
  if [ ! -d interop/x402/node_modules/@x402/fetch ] || [ ! -d interop/x402/node_modules/@x402/express ]; then
    echo "setup: installing the official x402 client and server from npm into interop/x402/node_modules" >&2
    (cd interop/x402 && npm ci --no-audit --no-fund --loglevel=error)
  fi
}
