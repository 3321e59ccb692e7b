#!/usr/bin/env python3
"""Buys one d402 task through a running `d402-agent daemon` (standard library only).

    python3 client.py --daemon http://127.0.0.1:7402 --token-file ~/.config/d402-agent/daemon-token \
        --capability util.json_transform@1 --input '{"value": {"a": 1}, "select": ["a"]}'

The daemon applies the buyer's spend policy, pays, retries and answers with the task and
its receipts; this program prints the result.
"""

import argparse
import json
import sys
import urllib.error
import urllib.request

parser = argparse.ArgumentParser()
parser.add_argument("--daemon", required=True)
parser.add_argument("--token-file", required=True)
parser.add_argument("--capability", required=True)
parser.add_argument("--input", required=True)
args = parser.parse_args()

with open(args.token_file) as file:
    token = file.read().strip()
request = urllib.request.Request(
    args.daemon.rstrip("/") + "/v1/tasks",
    data=json.dumps({"capabilityId": args.capability, "input": json.loads(args.input)}).encode(),
    headers={"content-type": "application/json", "authorization": f"Bearer {token}"},
    method="POST",
)
try:
    with urllib.request.urlopen(request, timeout=120) as response:
        answer = json.loads(response.read())
except urllib.error.HTTPError as error:
    print(error.read().decode(), file=sys.stderr)
    sys.exit(1)
print(json.dumps({"status": answer["task"]["status"], "result": answer["task"].get("result")}))
sys.exit(0 if answer["task"]["status"] == "accepted" else 2)
