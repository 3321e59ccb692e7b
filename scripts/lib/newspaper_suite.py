"""Lays newspaper4k's test pages out as eval.py's "scrapinghub" suite.

Usage: newspaper_suite.py DATA_DIR OUT_DIR
DATA_DIR is newspaper4k's tests/data (html/, txt/, metadata/). Every page that has an expected
text becomes html/<name>.html.gz plus an entry {url, articleBody} in ground-truth.json.
"""
import gzip
import json
import sys
from pathlib import Path

data, out = Path(sys.argv[1]), Path(sys.argv[2])
(out / "html").mkdir(parents=True, exist_ok=True)
truth = {}
for page in sorted((data / "html").glob("*.html")):
    text = data / "txt" / f"{page.stem}.txt"
    if not text.exists():
        continue
    meta = data / "metadata" / f"{page.stem}.json"
    url = json.loads(meta.read_text(encoding="utf-8")).get("url") if meta.exists() else None
    truth[page.stem] = {"url": url or "https://example.com/",
                        "articleBody": text.read_text(encoding="utf-8")}
    (out / "html" / f"{page.stem}.html.gz").write_bytes(gzip.compress(page.read_bytes()))
(out / "ground-truth.json").write_text(json.dumps(truth, ensure_ascii=False), encoding="utf-8")
print(f"newspaper suite: {len(truth)} pages", file=sys.stderr)
