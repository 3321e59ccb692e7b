// Checks the x402 `bazaar` extension of a route's 402 challenge with the official
// @x402/extensions validators: POSTs the JSON body in argv[3] to argv[2] without paying and
// prints {"status", "valid", "errors", "spec", "specErrors", "extension"} as JSON.
import { validateDiscoveryExtension, validateDiscoveryExtensionSpec } from "@x402/extensions/bazaar";
import { decodePaymentRequiredHeader } from "@x402/core/http";

const [url, body] = process.argv.slice(2);
const response = await fetch(url, {
  method: "POST",
  headers: { "content-type": "application/json" },
  body,
});
const challenge = decodePaymentRequiredHeader(response.headers.get("payment-required"));
const extension = challenge.extensions?.bazaar;
const result = extension ? validateDiscoveryExtension(extension) : { valid: false, errors: ["no bazaar extension"] };
const spec = extension ? validateDiscoveryExtensionSpec(extension) : { valid: false };
console.log(
  JSON.stringify({
    status: response.status,
    valid: result.valid,
    errors: result.errors ?? [],
    spec: spec.valid,
    specErrors: spec.errors ?? [],
    extension,
  }),
);
