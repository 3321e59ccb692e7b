//! The rails a gateway accepts at once: one `accepts[]` entry each, and dispatch of a paid
//! retry to the rail its chosen requirements name.

use std::sync::Arc;

use d402_x402::PaymentPayload;

use crate::{PaymentError, PaymentRail, RailId};

/// The same rail enabled twice on one network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("payment rail {rail} is enabled twice on network {network:?}; enable it once")]
pub struct DuplicateRail {
    /// The rail.
    pub rail: RailId,
    /// The network.
    pub network: String,
}

/// The enabled rails, in preference order (the first is the default).
#[derive(Clone)]
pub struct Rails {
    rails: Vec<Arc<dyn PaymentRail>>,
}

impl Rails {
    /// The rails in preference order; refuses none, and one rail twice on a network.
    pub fn new(rails: Vec<Arc<dyn PaymentRail>>) -> Result<Self, DuplicateRail> {
        assert!(!rails.is_empty(), "a gateway accepts at least one rail");
        for (i, rail) in rails.iter().enumerate() {
            if rails[..i]
                .iter()
                .any(|other| other.id() == rail.id() && other.network() == rail.network())
            {
                return Err(DuplicateRail {
                    rail: rail.id(),
                    network: rail.network().to_string(),
                });
            }
        }
        Ok(Self { rails })
    }

    /// Every rail, in preference order.
    pub fn all(&self) -> &[Arc<dyn PaymentRail>] {
        &self.rails
    }

    /// The preferred rail.
    pub fn first(&self) -> &Arc<dyn PaymentRail> {
        &self.rails[0]
    }

    /// The rail that [claims](PaymentRail::claims) a payment's chosen requirements.
    pub fn for_payment(
        &self,
        payment: &PaymentPayload,
    ) -> Result<&Arc<dyn PaymentRail>, PaymentError> {
        self.rails
            .iter()
            .find(|r| r.claims(&payment.accepted))
            .ok_or_else(|| PaymentError::UnsupportedNetwork(payment.accepted.network.clone()))
    }

    /// The rail a stored task was paid on.
    pub fn get(&self, id: RailId, network: &str) -> Option<&Arc<dyn PaymentRail>> {
        self.rails
            .iter()
            .find(|r| r.id() == id && r.network() == network)
    }
}
