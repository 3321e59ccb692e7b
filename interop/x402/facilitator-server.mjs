// The official x402 facilitator served over HTTP in the standard wire format
// (GET /supported, POST /verify, POST /settle with {x402Version, paymentPayload,
// paymentRequirements}) for the chain at RPC_URL, its gas key FACILITATOR_KEY. Prints
// "listening on <url>".
import express from "express";
import { localFacilitator } from "./facilitator.mjs";

const facilitator = localFacilitator(process.env.RPC_URL, process.env.FACILITATOR_KEY);
const app = express();
app.use(express.json());
app.get("/supported", (req, res) => res.json(facilitator.getSupported()));
for (const step of ["verify", "settle"]) {
  app.post(`/${step}`, async (req, res) => {
    try {
      res.json(await facilitator[step](req.body.paymentPayload, req.body.paymentRequirements));
    } catch (error) {
      res.status(500).json({ error: String(error) });
    }
  });
}
const listener = app.listen(0, "127.0.0.1", () => {
  console.log(`listening on http://127.0.0.1:${listener.address().port}/`);
});
