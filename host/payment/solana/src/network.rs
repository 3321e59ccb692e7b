//! Solana clusters named the CAIP-2 way (`solana:<genesis hash prefix>`), with the spec's
//! legacy `solana:mainnet-beta` accepted for mainnet and `solana:localnet` for a local SVM.

use std::fmt;
use std::str::FromStr;

/// A Solana cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SolanaNetwork {
    /// Mainnet beta: `solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp`.
    Mainnet,
    /// Devnet: `solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1`.
    Devnet,
    /// A local network (the d402 devnet's SVM): `solana:localnet`.
    Localnet,
}

/// A network name that is none of the known Solana clusters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a known Solana network; use solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp (mainnet, also solana:mainnet-beta), solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1 (devnet) or solana:localnet"
)]
pub struct NetworkError(pub String);

impl SolanaNetwork {
    /// The CAIP-2 name (`solana:localnet` for a local network).
    pub fn caip2(self) -> &'static str {
        match self {
            Self::Mainnet => "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp",
            Self::Devnet => "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1",
            Self::Localnet => "solana:localnet",
        }
    }

    /// The MPP `methodDetails.network` word: `mainnet-beta`, `devnet` or `localnet`.
    pub fn cluster(self) -> &'static str {
        match self {
            Self::Mainnet => "mainnet-beta",
            Self::Devnet => "devnet",
            Self::Localnet => "localnet",
        }
    }
}

impl FromStr for SolanaNetwork {
    type Err = NetworkError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp"
            | "solana:mainnet-beta"
            | "solana:mainnet" => Ok(Self::Mainnet),
            "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1" | "solana:devnet" => Ok(Self::Devnet),
            "solana:localnet" => Ok(Self::Localnet),
            other => Err(NetworkError(other.to_string())),
        }
    }
}

impl fmt::Display for SolanaNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.caip2())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_explicitly_and_others_are_refused() {
        for (name, network) in [
            ("solana:mainnet-beta", SolanaNetwork::Mainnet),
            (
                "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp",
                SolanaNetwork::Mainnet,
            ),
            (
                "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1",
                SolanaNetwork::Devnet,
            ),
            ("solana:localnet", SolanaNetwork::Localnet),
        ] {
            assert_eq!(name.parse::<SolanaNetwork>(), Ok(network));
            assert_eq!(network.to_string().parse::<SolanaNetwork>(), Ok(network));
        }
        assert_eq!(
            SolanaNetwork::Mainnet.to_string(),
            "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp"
        );
        for bad in [
            "solana",
            "eip155:8453",
            "solana:4uhcVJyU9pJkvQyS88uRDiswHXSCkY3z",
            "",
        ] {
            assert!(bad.parse::<SolanaNetwork>().is_err(), "{bad}");
        }
    }
}
