//! ed25519 keys and signatures, written in base58 (a d402 key is also a Solana address).

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use rand_core::CryptoRngCore;

use crate::error::ProtocolError;

/// An ed25519 public key; its text form (base58) is the wallet address.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// The 32 raw key bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Parses 32 raw key bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, ProtocolError> {
        VerifyingKey::from_bytes(bytes)
            .map(Self)
            .map_err(|e| ProtocolError::InvalidKey {
                what: "public key",
                reason: e.to_string(),
            })
    }

    /// Verifies a signature over `message` (strict: no malleable or small-order keys).
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), ProtocolError> {
        self.0
            .verify_strict(message, &signature.0)
            .map_err(|_| ProtocolError::BadSignature(format!("not signed by {self}")))
    }
}

impl Ord for PublicKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.as_bytes().cmp(other.0.as_bytes())
    }
}

impl PartialOrd for PublicKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bs58::encode(self.0.as_bytes()).into_string())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = ProtocolError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bytes: [u8; 32] = decode_base58_exact(text, "public key")?;
        Self::from_bytes(&bytes)
    }
}

/// An ed25519 signature, written in base58 as Solana writes signatures.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(ed25519_dalek::Signature);

impl Signature {
    /// The 64 raw signature bytes.
    pub fn to_bytes(&self) -> [u8; 64] {
        self.0.to_bytes()
    }

    /// Wraps 64 raw signature bytes.
    pub fn from_bytes(bytes: &[u8; 64]) -> Self {
        Self(ed25519_dalek::Signature::from_bytes(bytes))
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bs58::encode(self.0.to_bytes()).into_string())
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({self})")
    }
}

impl FromStr for Signature {
    type Err = ProtocolError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bytes: [u8; 64] = decode_base58_exact(text, "signature")?;
        Ok(Self::from_bytes(&bytes))
    }
}

fn decode_base58_exact<const N: usize>(
    text: &str,
    what: &'static str,
) -> Result<[u8; N], ProtocolError> {
    let bytes = bs58::decode(text)
        .into_vec()
        .map_err(|e| ProtocolError::InvalidKey {
            what,
            reason: format!("not base58: {e}"),
        })?;
    bytes
        .try_into()
        .map_err(|v: Vec<u8>| ProtocolError::InvalidKey {
            what,
            reason: format!("expected {N} bytes, got {}", v.len()),
        })
}

serde_via_text!(PublicKey, Signature);

/// An ed25519 signing key with its public key.
#[derive(Clone)]
pub struct Keypair(SigningKey);

impl Keypair {
    /// Generates a fresh key from a cryptographic random source.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        Self(SigningKey::generate(rng))
    }

    /// Builds the key from its 32-byte secret seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(seed))
    }

    /// Parses the 64-byte Solana keypair layout (seed followed by public key),
    /// refusing a public half that does not belong to the seed.
    pub fn from_keypair_bytes(bytes: &[u8]) -> Result<Self, ProtocolError> {
        let bytes: &[u8; 64] = bytes.try_into().map_err(|_| ProtocolError::InvalidKey {
            what: "keypair",
            reason: format!("expected 64 bytes, got {}", bytes.len()),
        })?;
        SigningKey::from_keypair_bytes(bytes)
            .map(Self)
            .map_err(|e| ProtocolError::InvalidKey {
                what: "keypair",
                reason: e.to_string(),
            })
    }

    /// The 64-byte Solana keypair layout: seed followed by public key.
    pub fn to_keypair_bytes(&self) -> [u8; 64] {
        self.0.to_keypair_bytes()
    }

    /// The public key (wallet address).
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// The key as a PKCS#8 PEM document (`-----BEGIN PRIVATE KEY-----`), as release keys
    /// are kept.
    pub fn to_pkcs8_pem(&self) -> Result<String, ProtocolError> {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        self.0
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .map(|pem| pem.to_string())
            .map_err(|e| ProtocolError::InvalidKey {
                what: "private key",
                reason: e.to_string(),
            })
    }

    /// Reads a PKCS#8 PEM ed25519 private key.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, ProtocolError> {
        use ed25519_dalek::pkcs8::DecodePrivateKey;
        SigningKey::from_pkcs8_pem(pem)
            .map(Self)
            .map_err(|e| ProtocolError::InvalidKey {
                what: "private key",
                reason: format!("not a PKCS#8 PEM ed25519 key ({e})"),
            })
    }

    /// Signs raw bytes. Protocol objects are signed through [`crate::Signed`], which adds
    /// the domain separation; use this only for foreign formats.
    pub fn sign_raw(&self, message: &[u8]) -> Signature {
        Signature(self.0.sign(message))
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keypair({})", self.public())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base58_round_trips_and_matches_solana_layout() {
        let key = Keypair::from_seed(&[7u8; 32]);
        let text = key.public().to_string();
        assert_eq!(text.parse::<PublicKey>().unwrap(), key.public());
        let bytes = key.to_keypair_bytes();
        assert_eq!(&bytes[32..], &key.public().to_bytes());
        assert_eq!(
            Keypair::from_keypair_bytes(&bytes).unwrap().public(),
            key.public()
        );
    }

    #[test]
    fn refuses_a_keypair_whose_halves_disagree() {
        let mut bytes = Keypair::from_seed(&[7u8; 32]).to_keypair_bytes();
        bytes[40] ^= 1;
        assert!(Keypair::from_keypair_bytes(&bytes).is_err());
    }

    #[test]
    fn refuses_wrong_lengths() {
        assert!("3mJr7AoUXx2Wqd".parse::<PublicKey>().is_err());
        assert!("0OIl".parse::<PublicKey>().is_err());
        assert!("abc".parse::<Signature>().is_err());
    }
}
