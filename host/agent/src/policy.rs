//! The spend policy, checked before anything is signed. Amounts are integer atomic units
//! of the asset (USDC micro-units on every rail d402 has). Command-line flags can only
//! tighten it.

use serde::{Deserialize, Serialize};

/// What the agent may spend.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Policy {
    /// Most one request may cost.
    pub max_per_request: Option<u64>,
    /// Most spent over the last 24 hours, all gateways.
    pub max_per_day: Option<u64>,
    /// Most spent over the last 24 hours at one gateway.
    pub max_per_gateway_per_day: Option<u64>,
    /// Most ever spent.
    pub max_lifetime: Option<u64>,
    /// Only these `payTo` addresses (empty: any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_pay_to: Vec<String>,
    /// Only these networks (empty: any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_networks: Vec<String>,
    /// Only these assets (empty: any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_assets: Vec<String>,
}

/// What one payment would be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote<'a> {
    /// The gateway.
    pub gateway: &'a str,
    /// Atomic units.
    pub amount: u64,
    /// The requirement's network.
    pub network: &'a str,
    /// The requirement's asset.
    pub asset: &'a str,
    /// The requirement's `payTo`.
    pub pay_to: &'a str,
}

impl<'a> Quote<'a> {
    /// `amount` of what `requirements` ask, paid to `gateway`.
    pub fn of(
        gateway: &'a str,
        amount: u64,
        requirements: &'a d402_payment::x402::PaymentRequirements,
    ) -> Self {
        Self {
            gateway,
            amount,
            network: &requirements.network,
            asset: &requirements.asset,
            pay_to: &requirements.pay_to,
        }
    }
}

/// What was already spent (reserved and not released).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Spent {
    /// Over the last 24 hours, all gateways.
    pub day: u64,
    /// Over the last 24 hours at the quote's gateway.
    pub gateway_day: u64,
    /// Ever.
    pub lifetime: u64,
}

/// Why the policy refuses a payment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Over a cap.
    #[error(
        "{cap}: paying {amount} would make {would_be}, above the cap of {limit} (atomic units); nothing was signed"
    )]
    OverCap {
        /// Which cap.
        cap: &'static str,
        /// This payment.
        amount: u64,
        /// Total with it.
        would_be: u64,
        /// The cap.
        limit: u64,
    },
    /// Not on an allow-list.
    #[error("{what} {value:?} is not in the policy's {list}; nothing was signed")]
    NotAllowed {
        /// What was checked.
        what: &'static str,
        /// Its value.
        value: String,
        /// The list.
        list: &'static str,
    },
}

impl Policy {
    /// This policy with `max_per_request` lowered to `limit` (never raised).
    pub fn tightened(mut self, limit: Option<u64>) -> Self {
        if let Some(limit) = limit {
            self.max_per_request = Some(self.max_per_request.map_or(limit, |m| m.min(limit)));
        }
        self
    }

    /// Whether `quote` may be paid, given what was `spent`.
    pub fn check(&self, quote: &Quote<'_>, spent: Spent) -> Result<(), PolicyError> {
        for (what, value, list, allowed) in [
            (
                "payTo",
                quote.pay_to,
                "allowed-pay-to",
                &self.allowed_pay_to,
            ),
            (
                "network",
                quote.network,
                "allowed-networks",
                &self.allowed_networks,
            ),
            ("asset", quote.asset, "allowed-assets", &self.allowed_assets),
        ] {
            // 0x addresses compare without their checksum case.
            if !allowed.is_empty() && !allowed.iter().any(|a| a.eq_ignore_ascii_case(value)) {
                return Err(PolicyError::NotAllowed {
                    what,
                    value: value.to_string(),
                    list,
                });
            }
        }
        for (cap, limit, already) in [
            ("max-per-request", self.max_per_request, 0),
            ("max-per-day", self.max_per_day, spent.day),
            (
                "max-per-gateway-per-day",
                self.max_per_gateway_per_day,
                spent.gateway_day,
            ),
            ("max-lifetime", self.max_lifetime, spent.lifetime),
        ] {
            let would_be = already.saturating_add(quote.amount);
            if let Some(limit) = limit.filter(|limit| would_be > *limit) {
                return Err(PolicyError::OverCap {
                    cap,
                    amount: quote.amount,
                    would_be,
                    limit,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quote(amount: u64) -> Quote<'static> {
        Quote {
            gateway: "http://g",
            amount,
            network: "d402:simulated",
            asset: "USD",
            pay_to: "payee",
        }
    }

    #[test]
    fn caps_count_what_was_spent_and_flags_only_tighten() {
        let policy = Policy {
            max_per_request: Some(100),
            max_per_day: Some(250),
            max_lifetime: Some(1_000),
            ..Policy::default()
        };
        assert_eq!(policy.check(&quote(100), Spent::default()), Ok(()));
        let over = policy.check(&quote(101), Spent::default()).unwrap_err();
        assert!(matches!(
            over,
            PolicyError::OverCap {
                cap: "max-per-request",
                ..
            }
        ));
        let day = Spent {
            day: 200,
            gateway_day: 200,
            lifetime: 200,
        };
        assert!(matches!(
            policy.check(&quote(100), day),
            Err(PolicyError::OverCap {
                cap: "max-per-day",
                would_be: 300,
                ..
            })
        ));
        let life = Spent {
            day: 0,
            gateway_day: 0,
            lifetime: 950,
        };
        assert!(matches!(
            policy.check(&quote(100), life),
            Err(PolicyError::OverCap {
                cap: "max-lifetime",
                ..
            })
        ));
        assert_eq!(policy.clone().tightened(Some(50)).max_per_request, Some(50));
        assert_eq!(
            policy.tightened(Some(500)).max_per_request,
            Some(100),
            "never raised"
        );
    }

    #[test]
    fn allow_lists_refuse_what_they_do_not_name() {
        let policy = Policy {
            allowed_pay_to: vec!["someone-else".into()],
            ..Policy::default()
        };
        let refused = policy.check(&quote(1), Spent::default()).unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("payTo \"payee\" is not in the policy's allowed-pay-to")
        );
        let open = Policy::default();
        assert_eq!(open.check(&quote(u64::MAX), Spent::default()), Ok(()));
    }
}
