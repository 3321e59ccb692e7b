// The official x402 server (@x402/express paymentMiddleware) with an in-process facilitator
// (@x402/core x402Facilitator + @x402/evm exact facilitator, settling through a viem wallet)
// on the chain at RPC_URL (chain id 8453): `POST /paid` costs $0.001 in Base USDC, paid to
// PAY_TO; the facilitator's gas key is FACILITATOR_KEY. Prints "listening on <url>".
import express from "express";
import { paymentMiddleware, x402ResourceServer } from "@x402/express";
import { ExactEvmScheme as ExactEvmServer } from "@x402/evm/exact/server";
import { localFacilitator } from "./facilitator.mjs";

const facilitator = localFacilitator(process.env.RPC_URL, process.env.FACILITATOR_KEY);
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
