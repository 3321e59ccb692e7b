//! Accounts on the rails: an ed25519 key (base58, also a Solana address) or an EVM address
//! (`0x` and 40 hex digits). Compared by bytes, never by text.

use std::fmt;
use std::str::FromStr;

/// An account a rail can pay from or to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Account {
    /// An ed25519 public key (d402 wallets, Solana accounts), shown in base58.
    Ed25519([u8; 32]),
    /// A 20-byte EVM address, shown as `0x` and lower-case hex.
    Evm([u8; 20]),
}

/// Why a text is not an account.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an account: expected a base58 ed25519/Solana key or a 0x EVM address")]
pub struct AccountError(pub String);

impl FromStr for Account {
    type Err = AccountError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || AccountError(text.to_string());
        if let Some(hex_digits) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
            let mut bytes = [0u8; 20];
            hex::decode_to_slice(hex_digits, &mut bytes).map_err(|_| error())?;
            return Ok(Self::Evm(bytes));
        }
        let decoded = bs58::decode(text).into_vec().map_err(|_| error())?;
        let bytes: [u8; 32] = decoded.try_into().map_err(|_| error())?;
        Ok(Self::Ed25519(bytes))
    }
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ed25519(bytes) => f.write_str(&bs58::encode(bytes).into_string()),
            Self::Evm(bytes) => write!(f, "0x{}", hex::encode(bytes)),
        }
    }
}

impl From<d402_protocol::PublicKey> for Account {
    fn from(key: d402_protocol::PublicKey) -> Self {
        Self::Ed25519(key.to_bytes())
    }
}

impl serde::Serialize for Account {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Account {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_parse_print_and_compare_by_bytes() {
        let evm: Account = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
            .parse()
            .unwrap();
        let lower: Account = "0x833589fcd6edb6e08f4c7c32d4f71b54bda02913"
            .parse()
            .unwrap();
        assert_eq!(evm, lower, "EVM addresses compare by bytes, not case");
        assert_eq!(
            evm.to_string(),
            "0x833589fcd6edb6e08f4c7c32d4f71b54bda02913"
        );
        let key = d402_protocol::Keypair::from_seed(&[3; 32]).public();
        let account: Account = key.to_string().parse().unwrap();
        assert_eq!(account, Account::from(key));
        assert_eq!(account.to_string(), key.to_string());
        for bad in [
            "",
            "0x1234",
            "0xzz3589fcd6edb6e08f4c7c32d4f71b54bda02913",
            "not-base58!",
            "3yZe7d",
        ] {
            assert!(bad.parse::<Account>().is_err(), "{bad:?} parsed");
        }
        let json = serde_json::to_string(&evm).unwrap();
        assert_eq!(serde_json::from_str::<Account>(&json).unwrap(), evm);
    }
}
