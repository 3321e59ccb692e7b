// The official x402 facilitator (@x402/core x402Facilitator + the @x402/evm exact
// facilitator), settling through a viem wallet with `key` on the chain at `rpcUrl`
// (chain id 8453).
import { ExactEvmScheme } from "@x402/evm/exact/facilitator";
import { toFacilitatorEvmSigner } from "@x402/evm";
import { x402Facilitator } from "@x402/core/facilitator";
import { createWalletClient, http, publicActions } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { base } from "viem/chains";

export function localFacilitator(rpcUrl, key) {
  const account = privateKeyToAccount(key);
  const wallet = createWalletClient({ account, chain: base, transport: http(rpcUrl) }).extend(publicActions);
  const signer = toFacilitatorEvmSigner({ ...wallet, address: account.address });
  return new x402Facilitator().register("eip155:8453", new ExactEvmScheme(signer));
}
