//! The Base task escrow (`contracts/src/TaskEscrow.sol`, decisions 0013 and 0014) as the
//! gateway sees it: a task's terms and the escrow address they fix — computed here, without
//! a chain call, so it can be the `payTo` of the 402 challenge — the terms the gateway
//! issues and authenticates ([`TermsIssuer`]), the operator's calls on the factory
//! ([`EscrowOperator`]) and the rail ([`EscrowRail`]).

mod operator;
mod rail;

pub use operator::{Closing, EscrowOperator, Stage, deploy_factory};
pub use rail::{EscrowConfig, EscrowRail};

use alloy::primitives::{Address, B256, U256, keccak256};
use alloy::sol_types::SolValue;
use serde::{Deserialize, Serialize};

/// Bindings of the committed escrow artifacts (generated).
#[allow(clippy::too_many_arguments)]
pub mod bindings {
    alloy::sol!(
        #[sol(rpc)]
        TaskEscrowFactory,
        "../../../contracts/artifacts/TaskEscrowFactory.json"
    );
    alloy::sol!(TaskVault, "../../../contracts/artifacts/TaskVault.json");
}

/// The key of a requirement's `extra` that carries the escrow terms ([`EscrowOffer`]).
pub const ESCROW_EXTRA: &str = "d402Escrow";

/// What a task's escrow is bound to (the contract's `Terms`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EscrowTerms {
    /// The token escrowed.
    pub token: Address,
    /// How much, in atomic units.
    pub amount: u64,
    /// Who may settle or refund.
    pub operator: Address,
    /// Unix seconds after which anyone may return the funds to the payer.
    pub deadline: u64,
    /// The most the settlement may pay as creator commission, in basis points.
    pub max_commission_bps: u16,
    /// Unique per task.
    pub salt: B256,
}

impl EscrowTerms {
    /// The terms as the contract takes them.
    pub fn to_sol(&self) -> bindings::TaskEscrowFactory::Terms {
        bindings::TaskEscrowFactory::Terms {
            token: self.token,
            amount: U256::from(self.amount),
            operator: self.operator,
            deadline: self.deadline,
            maxCommissionBps: self.max_commission_bps,
            salt: self.salt,
        }
    }

    /// The escrow address `factory` gives these terms (CREATE2 of the task's vault, salted
    /// with the hash of the ABI-encoded terms).
    pub fn escrow_address(&self, factory: Address) -> Address {
        let salt = keccak256(self.to_sol().abi_encode());
        factory.create2(salt, keccak256(&bindings::TaskVault::BYTECODE))
    }
}

/// The escrow terms of one challenge as the requirement's `extra.d402Escrow` shows them:
/// everything a buyer needs to recompute the escrow address (`payTo`), plus the nonce the
/// gateway derived the salt from — so the gateway can recognize terms it issued without
/// remembering them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EscrowOffer {
    /// The factory that deploys the escrow.
    pub factory: Address,
    /// Who settles or refunds it.
    pub operator: Address,
    /// The exact amount the escrow takes, atomic units, decimal.
    pub amount: String,
    /// Unix seconds after which anyone may reclaim the funds for the payer.
    pub deadline: u64,
    /// The cap on the creator commission, basis points.
    pub max_commission_bps: u16,
    /// The terms' salt: `keccak256(secret ‖ abi.encode(factory, token, amount, operator,
    /// deadline, maxCommissionBps, nonce))`.
    pub salt: B256,
    /// Random per challenge.
    pub nonce: B256,
}

impl EscrowOffer {
    /// The terms this offer shows, for escrows of `token` — what a buyer needs to check that
    /// `payTo` is their escrow address, or to reclaim the funds after the deadline.
    pub fn terms(&self, token: Address) -> Result<EscrowTerms, TermsError> {
        let amount = self
            .amount
            .parse()
            .map_err(|_| TermsError::Missing(format!("amount {:?}", self.amount)))?;
        Ok(EscrowTerms {
            token,
            amount,
            operator: self.operator,
            deadline: self.deadline,
            max_commission_bps: self.max_commission_bps,
            salt: self.salt,
        })
    }
}

/// Why escrow terms offered back by a buyer are not ones this gateway issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TermsError {
    /// No `extra.d402Escrow`, or not of its shape.
    #[error(
        "the payment carries no escrow terms (accepted.extra.{ESCROW_EXTRA}): {0}; pay the x402-base-escrow requirement of a fresh 402 challenge"
    )]
    Missing(String),
    /// The salt does not authenticate the terms (changed, or from another gateway).
    #[error("the escrow terms were not issued by this gateway")]
    Forged,
}

/// Issues per-challenge escrow terms and recognizes them later, statelessly: each salt is a
/// keyed hash of the other terms and a random nonce, under a secret only the gateway holds.
#[derive(Clone)]
pub struct TermsIssuer {
    secret: B256,
    factory: Address,
    token: Address,
    operator: Address,
    max_commission_bps: u16,
}

impl TermsIssuer {
    /// Terms for `token` escrows of `factory`, operated by `operator`, with the commission
    /// capped at `max_commission_bps`; salts keyed by `secret`.
    pub fn new(
        secret: B256,
        factory: Address,
        token: Address,
        operator: Address,
        max_commission_bps: u16,
    ) -> Self {
        Self {
            secret,
            factory,
            token,
            operator,
            max_commission_bps,
        }
    }

    fn salt(&self, amount: u64, deadline: u64, max_commission_bps: u16, nonce: B256) -> B256 {
        let fields = (
            self.factory,
            self.token,
            U256::from(amount),
            self.operator,
            deadline,
            max_commission_bps,
            nonce,
        )
            .abi_encode();
        keccak256([self.secret.as_slice(), &fields].concat())
    }

    /// Fresh terms for `amount` with `deadline`, and the offer that shows them.
    pub fn issue(&self, amount: u64, deadline: u64) -> (EscrowTerms, EscrowOffer) {
        let nonce = B256::from(rand::random::<[u8; 32]>());
        let salt = self.salt(amount, deadline, self.max_commission_bps, nonce);
        let offer = EscrowOffer {
            factory: self.factory,
            operator: self.operator,
            amount: amount.to_string(),
            deadline,
            max_commission_bps: self.max_commission_bps,
            salt,
            nonce,
        };
        let terms = offer.terms(self.token).expect("an issued amount parses");
        (terms, offer)
    }

    /// The terms of `offer`, if this issuer issued them.
    pub fn recognize(&self, offer: &EscrowOffer) -> Result<EscrowTerms, TermsError> {
        let terms = offer.terms(self.token)?;
        let ours = offer.factory == self.factory
            && offer.operator == self.operator
            && offer.salt
                == self.salt(
                    terms.amount,
                    offer.deadline,
                    offer.max_commission_bps,
                    offer.nonce,
                );
        if !ours {
            return Err(TermsError::Forged);
        }
        Ok(terms)
    }

    /// The offer in a requirement's `extra`.
    pub fn read_offer(extra: &serde_json::Value) -> Result<EscrowOffer, TermsError> {
        let offer = extra
            .get(ESCROW_EXTRA)
            .ok_or_else(|| TermsError::Missing("absent".into()))?;
        serde_json::from_value(offer.clone()).map_err(|e| TermsError::Missing(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer(secret: u8) -> TermsIssuer {
        TermsIssuer::new(
            B256::repeat_byte(secret),
            Address::repeat_byte(1),
            Address::repeat_byte(2),
            Address::repeat_byte(3),
            2000,
        )
    }

    #[test]
    fn issued_terms_are_recognized_and_every_changed_field_is_not() {
        let gateway = issuer(7);
        let (terms, offer) = gateway.issue(10_000, 1_900_000_000);
        assert_eq!(gateway.recognize(&offer), Ok(terms.clone()));
        let (other_terms, _) = gateway.issue(10_000, 1_900_000_000);
        assert_ne!(other_terms.salt, terms.salt, "a fresh salt per challenge");
        assert_ne!(
            other_terms.escrow_address(offer.factory),
            terms.escrow_address(offer.factory)
        );
        let changes: [fn(&mut EscrowOffer); 6] = [
            |o| o.amount = "9999".into(),
            |o| o.deadline += 1,
            |o| o.max_commission_bps = 10_000,
            |o| o.nonce = B256::repeat_byte(9),
            |o| o.operator = Address::repeat_byte(4),
            |o| o.factory = Address::repeat_byte(5),
        ];
        for change in changes {
            let mut forged = offer.clone();
            change(&mut forged);
            assert_eq!(gateway.recognize(&forged), Err(TermsError::Forged));
        }
        assert_eq!(issuer(8).recognize(&offer), Err(TermsError::Forged));
    }

    #[test]
    fn offers_round_trip_through_a_requirements_extra() {
        let (_, offer) = issuer(7).issue(10_000, 1_900_000_000);
        let extra = serde_json::json!({"name": "USD Coin", ESCROW_EXTRA: offer});
        assert_eq!(TermsIssuer::read_offer(&extra), Ok(offer));
        assert!(matches!(
            TermsIssuer::read_offer(&serde_json::json!({"name": "USD Coin"})),
            Err(TermsError::Missing(_))
        ));
    }
}
