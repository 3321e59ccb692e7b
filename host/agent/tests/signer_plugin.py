"""A signer plugin for the agent's tests (protocol: host/agent/src/plugin.rs).

Holds the keypair file named by PLUGIN_KEY; PLUGIN_MODE picks its behaviour: good,
bad-json, wrong-key or hang; every sign request is counted in PLUGIN_COUNTER."""

import base64
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../../../examples/python-buyer"))
from buyer import base58  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat  # noqa: E402

request = json.loads(sys.stdin.read())
with open(os.environ["PLUGIN_KEY"]) as file:
    key = Ed25519PrivateKey.from_private_bytes(bytes(json.load(file))[:32])
if request["kind"] == "address":
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    print(json.dumps({"version": 1, "address": base58(public)}))
    sys.exit(0)
with open(os.environ["PLUGIN_COUNTER"], "a") as counter:
    counter.write(json.dumps(request["payment"]) + "\n")
mode = os.environ.get("PLUGIN_MODE", "good")
if mode == "hang":
    time.sleep(60)
if mode == "bad-json":
    print("certainly, here is your signature")
    sys.exit(0)
if mode == "wrong-key":
    key = Ed25519PrivateKey.generate()
signature = key.sign(base64.b64decode(request["message"]))
print(json.dumps({"version": 1, "signature": base58(signature)}))
