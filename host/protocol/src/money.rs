//! Money: USD-denominated amounts held as integer micro-units (USDC has 6 decimals).
//!
//! The spec writes amounts as JSON numbers in dollars (`"amount": 0.009`) and prices as
//! text (`"$0.01"`); both convert exactly to and from micro-units.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::ProtocolError;

/// Micro-units per dollar (USDC atomic units).
pub const MICROS_PER_DOLLAR: u64 = 1_000_000;
/// Basis points in a whole.
pub const BPS_DENOMINATOR: u64 = 10_000;

/// An amount of money in micro-dollars. JSON form: a number of dollars, e.g. `0.009`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Amount(u64);

impl Amount {
    /// Zero dollars.
    pub const ZERO: Amount = Amount(0);

    /// From micro-dollars (USDC atomic units).
    pub const fn from_micros(micros: u64) -> Self {
        Self(micros)
    }

    /// Micro-dollars (USDC atomic units).
    pub const fn micros(self) -> u64 {
        self.0
    }

    /// `rate_bps` basis points of this amount, rounded down.
    pub fn share_bps(self, rate_bps: u32) -> Amount {
        Amount((u128::from(self.0) * u128::from(rate_bps) / u128::from(BPS_DENOMINATOR)) as u64)
    }

    /// Sum, or `None` on overflow.
    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }

    /// The amount as a JSON-friendly number of dollars.
    pub fn as_dollars(self) -> f64 {
        self.0 as f64 / MICROS_PER_DOLLAR as f64
    }

    /// Parses a number of dollars with at most 6 decimals.
    pub fn from_dollars(dollars: f64) -> Result<Self, ProtocolError> {
        let malformed = |reason: &str| ProtocolError::Malformed {
            path: ".".into(),
            reason: format!("invalid amount {dollars}: {reason}"),
        };
        if !dollars.is_finite() || dollars < 0.0 {
            return Err(malformed("must be a finite, non-negative number"));
        }
        let micros = dollars * MICROS_PER_DOLLAR as f64;
        if micros > u64::MAX as f64 / 2.0 {
            return Err(malformed("too large"));
        }
        let rounded = micros.round();
        if (micros - rounded).abs() > 1e-6 * rounded.max(1.0) {
            return Err(malformed("more than 6 decimal places"));
        }
        Ok(Self(rounded as u64))
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.as_dollars())
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let dollars = f64::deserialize(deserializer)?;
        Amount::from_dollars(dollars).map_err(serde::de::Error::custom)
    }
}

/// A price written as `$0.01`: dollars with at most 6 decimals.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Price(pub Amount);

impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let micros = self.0.micros();
        let whole = micros / MICROS_PER_DOLLAR;
        let frac = micros % MICROS_PER_DOLLAR;
        let mut frac_text = format!("{frac:06}");
        while frac_text.len() > 2 && frac_text.ends_with('0') {
            frac_text.pop();
        }
        write!(f, "${whole}.{frac_text}")
    }
}

impl Price {
    /// Parses dollars as people type them on a command line: `$0.01` or `0.01`.
    pub fn parse_dollars(text: &str) -> Result<Self, ProtocolError> {
        match text.strip_prefix('$') {
            Some(_) => text.parse(),
            None => format!("${text}").parse(),
        }
    }
}

impl FromStr for Price {
    type Err = ProtocolError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let malformed = |reason: &str| ProtocolError::Malformed {
            path: ".".into(),
            reason: format!("invalid price {text:?}: {reason}"),
        };
        let body = text
            .strip_prefix('$')
            .ok_or_else(|| malformed("must start with $"))?;
        let (whole, frac) = body.split_once('.').unwrap_or((body, ""));
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole) || !(frac.is_empty() || digits(frac)) {
            return Err(malformed("expected digits like $0.01"));
        }
        if frac.len() > 6 {
            return Err(malformed("more than 6 decimal places"));
        }
        let whole: u64 = whole.parse().map_err(|_| malformed("too large"))?;
        let frac_micros: u64 = format!("{frac:0<6}").parse().expect("six digits");
        whole
            .checked_mul(MICROS_PER_DOLLAR)
            .and_then(|w| w.checked_add(frac_micros))
            .map(|micros| Price(Amount(micros)))
            .ok_or_else(|| malformed("too large"))
    }
}

serde_via_text!(Price);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_parse_exactly() {
        assert_eq!("$0.01".parse::<Price>().unwrap().0.micros(), 10_000);
        assert_eq!("$2".parse::<Price>().unwrap().0.micros(), 2_000_000);
        assert_eq!("$0.000001".parse::<Price>().unwrap().0.micros(), 1);
        assert_eq!(Price(Amount::from_micros(10_000)).to_string(), "$0.01");
        assert_eq!(Price(Amount::from_micros(1)).to_string(), "$0.000001");
        for bad in ["0.01", "$", "$0.0000001", "$-1", "$1e3", "$0.0a"] {
            assert!(bad.parse::<Price>().is_err(), "{bad}");
        }
    }

    #[test]
    fn amounts_serialise_as_dollars_like_the_spec() {
        let amount = Amount::from_micros(9_000);
        assert_eq!(serde_json::to_string(&amount).unwrap(), "0.009");
        assert_eq!(serde_json::from_str::<Amount>("0.009").unwrap(), amount);
        assert!(serde_json::from_str::<Amount>("-0.5").is_err());
        assert!(serde_json::from_str::<Amount>("0.0000001").is_err());
    }

    #[test]
    fn shares_round_down() {
        let price = Amount::from_micros(10_000);
        assert_eq!(price.share_bps(1000).micros(), 1_000);
        assert_eq!(Amount::from_micros(3).share_bps(5000).micros(), 1);
    }
}
