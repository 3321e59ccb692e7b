#!/usr/bin/env bash
# Sets up a fresh machine and runs the main job.
# Builds `d402` and the capability components, installs them into ./state/node, publishes
# the template capability into ./state/publisher (keygen, template, validate, register,
# verify), runs web.page_to_markdown@1 in the sandbox on a saved page, and ends by running
# the gateway node in the foreground on embedded defaults (http://127.0.0.1:8402).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/setup.sh
ensure_rust_targets
ensure_chromium
./scripts/build-capabilities.sh
cargo build --locked --release --bin d402
d402=target/release/d402
./scripts/install-capabilities.sh "$d402" state/node
state=state/publisher
mkdir -p "$state"
$d402 capability template --id example.extract_product --version 1 > "$state/capability.json"
echo "manifest CID: $($d402 capability validate --file "$state/capability.json")"
$d402 capability register --file "$state/capability.json" --state "$state" --namespace example > "$state/registration.json"
$d402 capability verify --file "$state/registration.json" --manifest "$state/capability.json"
page=$(mktemp --suffix=.html)
cat > "$page" <<'HTML'
<html><head><title>Hello from d402</title></head><body><nav>Home | About</nav>
<article><h1>Hello from d402</h1><p>This page was converted to markdown by the
web.page_to_markdown@1 capability, running as a WebAssembly component in the d402 sandbox.</p>
<p>The result carries the snapshot CID, a content hash and evidence a validator can replay.</p>
</article><footer>Copyright</footer></body></html>
HTML
$d402 capability run --capability web.page_to_markdown@1 \
  --input '{"url":"https://example.com/hello"}' --snapshot "https://example.com/hello=$page"
rm -f "$page"
echo "starting the gateway node on embedded defaults (Ctrl-C stops it)" >&2
exec $d402 node
