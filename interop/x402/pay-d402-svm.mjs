// Pays a d402 gateway with the official x402 client on Solana (@x402/fetch + @x402/svm,
// a @solana/kit keypair signer): POSTs the JSON body in argv[3] to argv[2]; the client
// builds the partially-signed transfer the `exact` SVM requirement asks for (the gateway
// pays the fee) through RPC_URL, and retries with it. Prints {"status", "body",
// "paymentResponse"} as JSON. The buyer's keypair is BUYER_KEY (a JSON array of 64 bytes).
import { wrapFetchWithPaymentFromConfig, decodePaymentResponseHeader } from "@x402/fetch";
import { ExactSvmScheme } from "@x402/svm/exact/client";
import { createKeyPairSignerFromBytes } from "@solana/kit";

const [url, body] = process.argv.slice(2);
const signer = await createKeyPairSignerFromBytes(new Uint8Array(JSON.parse(process.env.BUYER_KEY)));
const pay = wrapFetchWithPaymentFromConfig(fetch, {
  schemes: [{ network: "solana:*", client: new ExactSvmScheme(signer, { rpcUrl: process.env.RPC_URL }) }],
});
const response = await pay(url, {
  method: "POST",
  headers: { "content-type": "application/json" },
  body,
});
const header = response.headers.get("payment-response");
console.log(
  JSON.stringify({
    status: response.status,
    body: await response.json(),
    paymentResponse: header ? decodePaymentResponseHeader(header) : null,
  }),
);
