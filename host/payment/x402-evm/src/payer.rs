//! The buyer's side of x402 `exact` on EVM: signs an EIP-3009 authorization for a
//! requirement whose network, asset and amount the buyer trusts.

use alloy::primitives::{Address, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use async_trait::async_trait;
use d402_payment::x402::{PaymentPayload, PaymentRequirements, X402_VERSION};
use d402_payment::{PayError, Payer, Purchase};

use crate::eip3009::{AuthorizationTerms, ExactEvmPayload, TokenDomain};
use crate::network::EvmNetwork;

/// Seconds before now that a signed authorization becomes valid (x402 clients backdate it
/// so that clock differences do not make it "not yet valid").
const BACKDATE_SECS: u64 = 600;

/// What a buyer pays with and what it agrees to pay.
pub struct EvmPayer {
    key: PrivateKeySigner,
    /// Networks and the assets trusted on each.
    trusted: Vec<(EvmNetwork, Address)>,
    /// The most one payment may be, in atomic units.
    max_amount: u64,
}

impl EvmPayer {
    /// Pays with `key`, only in the `trusted` (network, asset) pairs, at most `max_amount`
    /// atomic units per payment.
    pub fn new(
        key: PrivateKeySigner,
        trusted: Vec<(EvmNetwork, Address)>,
        max_amount: u64,
    ) -> Self {
        Self {
            key,
            trusted,
            max_amount,
        }
    }

    /// The paying address.
    pub fn address(&self) -> Address {
        self.key.address()
    }

    /// The trusted network and asset of `requirements`, if it is one this payer may pay.
    fn trusted(&self, requirements: &PaymentRequirements) -> Option<(EvmNetwork, Address)> {
        let network: EvmNetwork = requirements.network.parse().ok()?;
        let asset: Address = requirements.asset.parse().ok()?;
        self.trusted
            .contains(&(network, asset))
            .then_some((network, asset))
    }
}

#[async_trait]
impl Payer for EvmPayer {
    fn can_pay(&self, requirements: &PaymentRequirements) -> bool {
        requirements.scheme == "exact"
            && self.trusted(requirements).is_some()
            && requirements
                .amount
                .parse::<u64>()
                .is_ok_and(|a| a <= self.max_amount)
            && requirements.extra["name"].is_string()
            && requirements.extra["version"].is_string()
    }

    async fn pay(
        &self,
        requirements: &PaymentRequirements,
        purchase: &Purchase<'_>,
    ) -> Result<PaymentPayload, PayError> {
        let refuse = || PayError::NoMatchingRequirement(requirements.network.clone());
        if !self.can_pay(requirements) {
            return Err(refuse());
        }
        let (network, asset) = self.trusted(requirements).ok_or_else(refuse)?;
        let amount: u64 = requirements.amount.parse().map_err(|_| refuse())?;
        let to: Address = requirements.pay_to.parse().map_err(|_| refuse())?;
        let domain = TokenDomain {
            name: requirements.extra["name"]
                .as_str()
                .unwrap_or_default()
                .into(),
            version: requirements.extra["version"]
                .as_str()
                .unwrap_or_default()
                .into(),
            chain_id: network.chain_id(),
            token: asset,
        };
        let now = purchase.now.unix_millis() / 1000;
        let authorization = AuthorizationTerms {
            from: self.key.address(),
            to,
            value: U256::from(amount),
            valid_after: U256::from(now.saturating_sub(BACKDATE_SECS)),
            valid_before: U256::from(now + requirements.max_timeout_seconds),
            nonce: B256::from(rand::random::<[u8; 32]>()),
        };
        let signature = authorization
            .sign(&domain, &self.key)
            .map_err(|e| PayError::Signing(e.to_string()))?;
        let payload = serde_json::to_value(ExactEvmPayload {
            signature,
            authorization,
        })
        .map_err(|e| PayError::Signing(e.to_string()))?;
        Ok(PaymentPayload {
            x402_version: X402_VERSION,
            resource: purchase.resource.cloned(),
            accepted: requirements.clone(),
            payload,
            extensions: Default::default(),
        })
    }
}
