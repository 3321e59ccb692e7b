//! The checks every x402 `exact` EVM payment passes before anything touches the chain:
//! scheme, network and asset, the payee, the amount, the validity window and the EIP-712
//! signer. Shared by the direct rail ([`crate::X402EvmRail`]) and the escrow rail
//! ([`crate::EscrowRail`]), which differ only in where the payment must go.

use alloy::primitives::{Address, U256};
use d402_payment::x402::PaymentPayload;
use d402_payment::{Expectation, PaymentError, PaymentKey};
use d402_protocol::Amount;

use crate::eip3009::{ExactEvmPayload, SignatureError, TokenDomain};
use crate::network::EvmNetwork;

/// The token a rail is paid in and its EIP-712 domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenConfig {
    /// The token contract.
    pub asset: Address,
    /// Its EIP-712 domain name (`"USD Coin"` for Base USDC).
    pub domain_name: String,
    /// Its EIP-712 domain version (`"2"`).
    pub domain_version: String,
}

impl TokenConfig {
    /// Base USDC (domain "USD Coin" / "2").
    pub fn base_usdc() -> Self {
        Self {
            asset: crate::BASE_USDC,
            domain_name: crate::USDC_DOMAIN_NAME.into(),
            domain_version: crate::USDC_DOMAIN_VERSION.into(),
        }
    }
}

/// Seconds an authorization must stay valid after admission, at least: settling takes a
/// transaction after the task ran.
pub const MIN_SETTLEMENT_WINDOW_SECS: u64 = 30;
/// Seconds of clock difference tolerated on `validAfter` and on the upper bound of
/// `validBefore`.
pub const CLOCK_MARGIN_SECS: u64 = 60;

/// Verifies `exact` EVM payments for one chain and token, offline.
#[derive(Debug, Clone)]
pub(crate) struct ExactVerifier {
    /// The CAIP-2 network name.
    pub network: String,
    /// The token.
    pub asset: Address,
    /// The token's EIP-712 domain.
    pub domain: TokenDomain,
}

impl ExactVerifier {
    /// The verifier of `token` on `network`.
    pub fn new(network: EvmNetwork, token: &TokenConfig) -> Self {
        Self {
            network: network.to_string(),
            asset: token.asset,
            domain: TokenDomain {
                name: token.domain_name.clone(),
                version: token.domain_version.clone(),
                chain_id: network.chain_id(),
                token: token.asset,
            },
        }
    }

    /// The EVM payload of `payment`, with its scheme, network and asset checked.
    pub fn read(&self, payment: &PaymentPayload) -> Result<ExactEvmPayload, PaymentError> {
        if payment.accepted.scheme != "exact" || payment.accepted.network != self.network {
            return Err(PaymentError::UnsupportedNetwork(
                payment.accepted.network.clone(),
            ));
        }
        let asset: Address = payment
            .accepted
            .asset
            .parse()
            .map_err(|_| PaymentError::WrongAsset(payment.accepted.asset.clone()))?;
        if asset != self.asset {
            return Err(PaymentError::WrongAsset(payment.accepted.asset.clone()));
        }
        payment
            .typed()
            .map_err(|e| PaymentError::Malformed(e.to_string()))
    }

    /// The once-only key of `payment`: `network:asset:from:nonce`.
    pub fn key_of(&self, payment: &ExactEvmPayload) -> PaymentKey {
        let terms = &payment.authorization;
        PaymentKey(
            format!(
                "{}:{}:{}:{}",
                self.network, self.asset, terms.from, terms.nonce
            )
            .to_ascii_lowercase(),
        )
    }

    /// The payee, amount, window and signature (no chain access): the amount authorized.
    pub fn check(
        &self,
        payment: &ExactEvmPayload,
        expected: &Expectation<'_>,
        pay_to: Address,
    ) -> Result<Amount, PaymentError> {
        let terms = &payment.authorization;
        if terms.to != pay_to {
            return Err(PaymentError::WrongPayee(terms.to.to_checksum(None)));
        }
        let value = u64::try_from(terms.value)
            .map_err(|_| PaymentError::Malformed("value exceeds 2^64 atomic units".into()))?;
        if value < expected.price.micros() {
            return Err(PaymentError::Underpaid {
                offered: value,
                price: expected.price.micros(),
            });
        }
        let now = expected.now.unix_millis() / 1000;
        let seconds = |n: u64| U256::from(n);
        let not_yet_valid = terms.valid_after > seconds(now + CLOCK_MARGIN_SECS);
        let too_short = terms.valid_before < seconds(now + MIN_SETTLEMENT_WINDOW_SECS);
        let too_long =
            terms.valid_before > seconds(now + expected.max_timeout_seconds + CLOCK_MARGIN_SECS);
        if not_yet_valid || too_short || too_long {
            return Err(PaymentError::Expired);
        }
        payment.verify_signer(&self.domain).map_err(|e| match e {
            SignatureError::Malformed => PaymentError::Malformed(e.to_string()),
            SignatureError::WrongSigner { .. } => PaymentError::BadSignature(e.to_string()),
        })?;
        Ok(Amount::from_micros(value))
    }

    /// The requirement's `extra` every `exact` EVM client needs: the token's EIP-712 name
    /// and version.
    pub fn domain_extra(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut extra = serde_json::Map::new();
        extra.insert("name".into(), self.domain.name.clone().into());
        extra.insert("version".into(), self.domain.version.clone().into());
        extra
    }
}
