# Shared set-up steps for scripts/main.sh and scripts/test.sh (sourced, not run).

# The wasm32-wasip2 target builds capability components.
ensure_rust_targets() {
  if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    echo "setup: adding the wasm32-wasip2 Rust target" >&2
    rustup target add wasm32-wasip2
  fi
}
