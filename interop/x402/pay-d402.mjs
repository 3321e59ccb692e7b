// Pays a d402 gateway with the official x402 client (@x402/fetch + @x402/evm, viem local
// account): POSTs the JSON body in argv[3] to argv[2] and prints
// {"status", "body", "paymentResponse"} as JSON on stdout. The buyer key is BUYER_KEY.
import { wrapFetchWithPaymentFromConfig, decodePaymentResponseHeader } from "@x402/fetch";
import { ExactEvmScheme } from "@x402/evm";
import { privateKeyToAccount } from "viem/accounts";

const [url, body] = process.argv.slice(2);
const account = privateKeyToAccount(process.env.BUYER_KEY);
const pay = wrapFetchWithPaymentFromConfig(fetch, {
  schemes: [{ network: "eip155:8453", client: new ExactEvmScheme(account) }],
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
