//! EVM networks in CAIP-2 form (`eip155:<chain id>`).

use std::fmt;
use std::str::FromStr;

/// An EVM chain named the CAIP-2 way, e.g. `eip155:8453` (Base).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EvmNetwork(u64);

/// A network name that is not `eip155:<chain id>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not an EVM network; expected CAIP-2 eip155:<chain id>, e.g. eip155:8453 (Base) or eip155:84532 (Base Sepolia)"
)]
pub struct NetworkError(pub String);

impl EvmNetwork {
    /// Base mainnet.
    pub const BASE: EvmNetwork = EvmNetwork(8453);
    /// Base Sepolia.
    pub const BASE_SEPOLIA: EvmNetwork = EvmNetwork(84532);

    /// The network of `chain_id`.
    pub const fn from_chain_id(chain_id: u64) -> Self {
        Self(chain_id)
    }

    /// The EIP-155 chain id (what EIP-712 domains carry).
    pub const fn chain_id(self) -> u64 {
        self.0
    }
}

impl FromStr for EvmNetwork {
    type Err = NetworkError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.strip_prefix("eip155:")
            .filter(|id| !id.starts_with('0') && id.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|id| id.parse().ok())
            .map(Self)
            .ok_or_else(|| NetworkError(text.to_string()))
    }
}

impl fmt::Display for EvmNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "eip155:{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caip2_names_parse_and_print_and_others_are_refused() {
        assert_eq!("eip155:8453".parse(), Ok(EvmNetwork::BASE));
        assert_eq!("eip155:84532".parse(), Ok(EvmNetwork::BASE_SEPOLIA));
        assert_eq!(
            "eip155:31337".parse::<EvmNetwork>().unwrap().chain_id(),
            31337
        );
        assert_eq!(EvmNetwork::BASE.to_string(), "eip155:8453");
        for bad in [
            "base",
            "eip155:",
            "eip155:0x2105",
            "eip155:08453",
            "solana:5eykt",
            "eip155:-1",
        ] {
            let error = bad.parse::<EvmNetwork>().unwrap_err().to_string();
            assert!(error.contains("eip155:<chain id>"), "{bad}: {error}");
        }
    }
}
