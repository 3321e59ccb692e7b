//! The buyer's side of `solana-direct`: pays a trusted `d402-solana-transfer` requirement
//! first — a USDC transfer to the gateway with the memo naming the buyer's own request
//! body — waits for it to be confirmed, and proves it with `Authorization: Payment`.

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use d402_payment::x402::{PaymentPayload, PaymentRequirements, TransferProof, X402_VERSION};
use d402_payment::{PayError, Payer, Purchase, request_binding};
use solana_address::Address;
use solana_keypair::Keypair;
use solana_signer::Signer;

use crate::direct::{MEMO_PREFIX, SCHEME};
use crate::network::SolanaNetwork;
use crate::rpc::SolanaRpc;
use crate::transfer::{self, TransferOrder};

/// Pays `d402-solana-transfer` requirements from a Solana keypair.
pub struct SolanaPayer {
    key: Keypair,
    rpc: SolanaRpc,
    network: SolanaNetwork,
    mint: Address,
    decimals: u8,
    max_amount: u64,
}

impl SolanaPayer {
    /// Pays from `key` through `rpc` on `network`, in `mint` (with `decimals`) only, at most
    /// `max_amount` atomic units per payment.
    pub fn new(
        key: Keypair,
        rpc: SolanaRpc,
        network: SolanaNetwork,
        mint: Address,
        decimals: u8,
        max_amount: u64,
    ) -> Self {
        Self {
            key,
            rpc,
            network,
            mint,
            decimals,
            max_amount,
        }
    }
}

#[async_trait]
impl Payer for SolanaPayer {
    fn can_pay(&self, requirements: &PaymentRequirements) -> bool {
        requirements.scheme == SCHEME
            && requirements.network.parse::<SolanaNetwork>() == Ok(self.network)
            && requirements.asset.parse::<Address>() == Ok(self.mint)
            && requirements
                .amount
                .parse::<u64>()
                .is_ok_and(|amount| amount <= self.max_amount)
    }

    async fn pay(
        &self,
        requirements: &PaymentRequirements,
        purchase: &Purchase<'_>,
    ) -> Result<PaymentPayload, PayError> {
        let refuse = |why: String| PayError::Signing(why);
        let recipient: Address = requirements.pay_to.parse().map_err(|_| {
            refuse(format!(
                "payTo {} is not a Solana address",
                requirements.pay_to
            ))
        })?;
        let amount: u64 = requirements
            .amount
            .parse()
            .map_err(|_| refuse(format!("amount {} is not an integer", requirements.amount)))?;
        // The memo names this buyer's own request body, whatever the challenge says.
        let memo = format!("{MEMO_PREFIX}{}", request_binding(purchase.body));
        if requirements.extra.get("memo").and_then(|m| m.as_str()) != Some(memo.as_str()) {
            return Err(refuse(
                "the challenge's memo does not name this request body".into(),
            ));
        }
        let order = TransferOrder {
            mint: self.mint,
            decimals: self.decimals,
            recipient,
            amount,
            memo: Some(&memo),
        };
        let signature = transfer::send(&self.rpc, &self.key, &order, Duration::from_secs(60))
            .await
            .map_err(|e| refuse(e.to_string()))?;
        let proof = TransferProof {
            scheme: SCHEME.into(),
            network: requirements.network.clone(),
            transaction: signature.to_string(),
            payer: self.key.pubkey().to_string(),
        };
        Ok(PaymentPayload {
            x402_version: X402_VERSION,
            resource: purchase.resource.cloned(),
            accepted: requirements.clone(),
            payload: serde_json::to_value(proof).map_err(|e| refuse(e.to_string()))?,
            extensions: Default::default(),
        })
    }

    fn header(&self, payment: &PaymentPayload) -> (&'static str, String) {
        let proof = serde_json::to_vec(&payment.payload).expect("a proof serializes");
        (
            "authorization",
            format!("Payment {}", URL_SAFE_NO_PAD.encode(proof)),
        )
    }
}
