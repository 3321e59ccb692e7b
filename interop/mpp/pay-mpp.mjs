// Pays a d402 gateway with the official Solana MPP client (@solana/mpp + mppx) in push mode:
// POSTs the JSON body in argv[3] to argv[2]; on its 402 the client sends the USDC transfer
// the WWW-Authenticate: Payment challenge asks for through RPC_URL, waits for it, and retries
// with the credential. Prints {"status", "body", "receipt"} as JSON. The buyer's keypair is
// BUYER_KEY (a JSON array of 64 bytes, as solana-keygen writes it).
import { Mppx, solana } from "@solana/mpp/client";
import { createKeyPairSignerFromBytes } from "@solana/kit";

const [url, body] = process.argv.slice(2);
const signer = await createKeyPairSignerFromBytes(new Uint8Array(JSON.parse(process.env.BUYER_KEY)));
const mppx = Mppx.create({
  methods: [solana.charge({ signer, rpcUrl: process.env.RPC_URL, broadcast: true })],
  polyfill: false,
});
const response = await mppx.fetch(url, {
  method: "POST",
  headers: { "content-type": "application/json" },
  body,
});
const receipt = response.headers.get("payment-receipt");
console.log(
  JSON.stringify({
    status: response.status,
    body: await response.json(),
    receipt: receipt ? JSON.parse(Buffer.from(receipt, "base64url").toString()) : null,
  }),
);
