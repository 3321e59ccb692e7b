#!/usr/bin/env python3
"""A d402 buyer in Python, written from the gateway's OpenAPI document alone.

It pays the simulated rail: POST the task, read the x402 challenge from the 402's
PAYMENT-REQUIRED header, sign a SimulatedAuthorization (components.schemas) with an
ed25519 key, and send the same body again with PAYMENT-SIGNATURE. Prints the task's
JSON answer; exits 0 when accepted, 2 when not, 1 on errors.

    python3 buyer.py --gateway http://127.0.0.1:8402 --key buyer.json \
        --input '{"value": {"a": 1}, "select": ["a"]}' [--capability ID]

The key file is a Solana-layout keypair (a JSON array of 64 bytes: seed, then public key),
as `d402 keygen` writes it. Needs the `cryptography` package.
"""

import argparse
import base64
import datetime
import hashlib
import json
import secrets
import sys
import urllib.error
import urllib.request

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

AUTHORIZATION_TYPE = "simulated-payment-authorization"
B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def base58(data: bytes) -> str:
    """Bitcoin-alphabet base58, as the spec's `signer` and `signature` use."""
    number = int.from_bytes(data, "big")
    text = ""
    while number:
        number, digit = divmod(number, 58)
        text = B58[digit] + text
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + text


def jcs(value) -> bytes:
    """RFC 8785 canonical JSON for documents of strings, integers, booleans, null, arrays
    and objects (floats would need ECMAScript number formatting: refused here)."""

    def check(v):
        if isinstance(v, float):
            raise ValueError("floats are not supported by this example's JCS")
        if isinstance(v, dict):
            for item in v.values():
                check(item)
        if isinstance(v, list):
            for item in v:
                check(item)

    check(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def post(url: str, body: dict, headers: dict):
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", **headers},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read() or b"{}")


def header(headers: dict, name: str):
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateway", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--input", required=True, help="the task input, JSON")
    parser.add_argument("--capability")
    args = parser.parse_args()

    with open(args.key) as file:
        keypair = bytes(json.load(file))
    key = Ed25519PrivateKey.from_private_bytes(keypair[:32])
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    body = {"input": json.loads(args.input)}
    if args.capability:
        body["capabilityId"] = args.capability
    url = args.gateway.rstrip("/") + "/tasks"

    # 1. The unpaid request: a 402 with the challenge in PAYMENT-REQUIRED.
    status, headers, answer = post(url, body, {})
    if status != 402:
        print(f"expected 402, got {status}: {answer}", file=sys.stderr)
        return 1
    challenge = json.loads(base64.b64decode(header(headers, "PAYMENT-REQUIRED")))
    offers = [a for a in challenge["accepts"] if a.get("extra", {}).get("authorization") == AUTHORIZATION_TYPE]
    if not offers:
        print("the gateway does not accept the simulated rail", file=sys.stderr)
        return 1
    accepted = offers[0]

    # 2. The authorization (components.schemas.SimulatedAuthorization), signed over
    #    "d402/simulated-payment-authorization/v1" + 0x00 + JCS(authorization).
    lifetime = min(int(accepted["maxTimeoutSeconds"]), 300)
    expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=lifetime)
    authorization = {
        "network": accepted["network"],
        "amount": accepted["amount"],
        "payTo": accepted["payTo"],
        "nonce": secrets.token_hex(32),
        "expiresAt": expires.strftime("%Y-%m-%dT%H:%M:%S.") + f"{expires.microsecond // 1000:03d}Z",
        "taskBinding": "sha256:" + hashlib.sha256(jcs(body)).hexdigest(),
    }
    message = f"d402/{AUTHORIZATION_TYPE}/v1".encode() + b"\0" + jcs(authorization)
    envelope = {
        "type": AUTHORIZATION_TYPE,
        "payload": authorization,
        "signer": base58(public),
        "signature": base58(key.sign(message)),
    }
    payment = {
        "x402Version": 2,
        "resource": challenge.get("resource"),
        "accepted": accepted,
        "payload": envelope,
    }

    # 3. The same body again, paid.
    signature = base64.b64encode(json.dumps(payment).encode()).decode()
    status, headers, answer = post(url, body, {"PAYMENT-SIGNATURE": signature})
    print(json.dumps(answer, indent=2))
    if status == 200 and answer.get("status") == "accepted":
        return 0
    print(f"not accepted: HTTP {status}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
