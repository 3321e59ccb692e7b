#!/usr/bin/env bash
# Extractor command for ../shared/extraction-dev/eval.py: runs web.page_to_markdown@1 through
# the real sandbox on a saved page (replay mode) and prints the markdown; exits non-zero when
# the capability rejects the page.
# Usage: eval.py --name d402 --cmd 'scripts/eval-extract-page.sh {path} {url}'
set -euo pipefail
path=$1
url=$2
d402=${D402_BIN:-target/release/d402}
out=$("$d402" capability run --capability web.page_to_markdown@1 \
  --input "{\"url\": \"$url\"}" --snapshot "$url=$path") || exit 2
python3 -c 'import json,sys; print(json.load(sys.stdin)["result"]["markdown"])' <<<"$out"
