//! The rails a gateway accepts at once: one `accepts[]` entry each, and dispatch of a paid
//! retry to the rail its chosen requirements name.

use std::sync::Arc;

use d402_x402::PaymentPayload;

use crate::{PaymentError, PaymentRail, RailId};

/// Two enabled rails would answer the same scheme and network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("two payment rails accept scheme {scheme:?} on network {network:?}; enable one")]
pub struct DuplicateRail {
    /// The scheme.
    pub scheme: String,
    /// The network.
    pub network: String,
}

/// The enabled rails, in preference order (the first is the default).
#[derive(Clone)]
pub struct Rails {
    rails: Vec<Arc<dyn PaymentRail>>,
}

impl Rails {
    /// The rails in preference order; refuses none, and two on the same method.
    pub fn new(rails: Vec<Arc<dyn PaymentRail>>) -> Result<Self, DuplicateRail> {
        assert!(!rails.is_empty(), "a gateway accepts at least one rail");
        for (i, rail) in rails.iter().enumerate() {
            if rails[..i]
                .iter()
                .any(|other| other.scheme() == rail.scheme() && other.network() == rail.network())
            {
                return Err(DuplicateRail {
                    scheme: rail.scheme().to_string(),
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

    /// The rail a payment's chosen requirements name (scheme and network).
    pub fn for_payment(
        &self,
        payment: &PaymentPayload,
    ) -> Result<&Arc<dyn PaymentRail>, PaymentError> {
        self.rails
            .iter()
            .find(|r| {
                r.scheme() == payment.accepted.scheme && r.network() == payment.accepted.network
            })
            .ok_or_else(|| PaymentError::UnsupportedNetwork(payment.accepted.network.clone()))
    }

    /// The rail a stored task was paid on.
    pub fn get(&self, id: RailId, network: &str) -> Option<&Arc<dyn PaymentRail>> {
        self.rails
            .iter()
            .find(|r| r.id() == id && r.network() == network)
    }
}
