#!/usr/bin/env bash
# A second extraction check on pages nobody here tuned for: the 23 real news pages (nine
# languages) that ship with newspaper4k's source distribution on PyPI, scored against
# newspaper4k's own expected article text with ../shared/extraction-dev/eval.py (its
# "scrapinghub" layout: article body only, no headline).
# Usage: scripts/eval-newspaper-pages.sh [eval.py options...]
#   e.g. scripts/eval-newspaper-pages.sh --name d402 --cmd "$PWD/scripts/eval-extract-page.sh {path} {url}"
set -euo pipefail
cd "$(dirname "$0")/.."
work=${D402_EVAL_WORK:-target/eval-newspaper}
version=0.9.6
if [ ! -f "$work/eval/scrapinghub/ground-truth.json" ]; then
  mkdir -p "$work"
  pip download --quiet --no-deps --no-binary :all: "newspaper4k==$version" -d "$work" >&2
  tar xzf "$work/newspaper4k-$version.tar.gz" -C "$work"
  python3 scripts/lib/newspaper_suite.py "$work/newspaper4k-$version/tests/data" "$work/eval/scrapinghub"
fi
cp ../shared/extraction-dev/eval.py "$work/eval/eval.py"
exec python3 "$work/eval/eval.py" --suite scrapinghub "$@"
