// The official x402 server (@x402/express paymentMiddleware) with an in-process facilitator
// (@x402/core x402Facilitator + @x402/evm exact facilitator, settling through a viem wallet)
// on the chain at RPC_URL (chain id 8453): `POST /paid` costs $0.001 in Base USDC, paid to
// PAY_TO; the facilitator's gas key is FACILITATOR_KEY. Prints "listening on <url>".
import express from "express";
import { paymentMiddleware, x402ResourceServer } from "@x402/express";
import { ExactEvmScheme as ExactEvmServer } from "@x402/evm/exact/server";
import { ExactEvmScheme as ExactEvmFacilitator } from "@x402/evm/exact/facilitator";
import { toFacilitatorEvmSigner } from "@x402/evm";
import { x402Facilitator } from "@x402/core/facilitator";
import { createWalletClient, http, publicActions } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { base } from "viem/chains";

const account = privateKeyToAccount(process.env.FACILITATOR_KEY);
const wallet = createWalletClient({ account, chain: base, transport: http(process.env.RPC_URL) })
  .extend(publicActions);
const signer = toFacilitatorEvmSigner({ ...wallet, address: account.address });
const facilitator = new x402Facilitator().register("eip155:8453", new ExactEvmFacilitator(signer));
const server = new x402ResourceServer(facilitator).register("eip155:8453", new ExactEvmServer());

const app = express();
app.use(express.json());
app.use(
  paymentMiddleware(
    {
      "POST /paid": {
        accepts: { scheme: "exact", price: "$0.001", network: "eip155:8453", payTo: process.env.PAY_TO },
        description: "A paid echo",
      },
    },
    server,
  ),
);
app.post("/paid", (req, res) => res.json({ paid: true, echo: req.body ?? null }));
const listener = app.listen(0, "127.0.0.1", () => {
  console.log(`listening on http://127.0.0.1:${listener.address().port}`);
});
