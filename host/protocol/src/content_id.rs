//! Content identifiers: CIDv1 over a sha2-256 multihash, and `sha256:<hex>` content hashes.
//!
//! Every CID d402 emits uses the `raw` codec, so a CID is a pure function of the digest and
//! maps one-to-one onto the spec's `sha256:<hex>` form (see docs/decisions/0002-cid-codec.md).
//! JSON objects are hashed over their RFC 8785 canonical form, byte blobs as they are.

use std::fmt;
use std::str::FromStr;

use cid::Cid;
use multihash::Multihash;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::canonical;
use crate::error::ProtocolError;

/// Multicodec code of `raw` binary content.
const RAW_CODEC: u64 = 0x55;
/// Multihash code of sha2-256.
const SHA2_256: u64 = 0x12;
/// Prefix of the spec's textual digest form.
const SHA256_PREFIX: &str = "sha256:";

/// A sha2-256 digest of some bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Digest(pub [u8; 32]);

impl Sha256Digest {
    /// Hashes `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// The digest as lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SHA256_PREFIX}{}", self.to_hex())
    }
}

/// A content identifier: CIDv1, raw codec, sha2-256, written in base32 (`bafkrei…`).
///
/// Parsing also accepts `sha256:<64 hex>`, which names the same digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentId(Sha256Digest);

impl ContentId {
    /// The CID of raw bytes (a WASM artifact, a page snapshot).
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Self(Sha256Digest::of(bytes))
    }

    /// The CID of a JSON-serialisable object, hashed over its RFC 8785 canonical form.
    pub fn of_json<T: Serialize + ?Sized>(value: &T) -> Result<Self, ProtocolError> {
        Ok(Self::of_bytes(&canonical::to_vec(value)?))
    }

    /// The sha2-256 digest this CID names.
    pub fn digest(&self) -> Sha256Digest {
        self.0
    }

    /// The spec's `sha256:<hex>` form of the same digest.
    pub fn to_sha256_string(&self) -> String {
        format!("{SHA256_PREFIX}{}", self.0.to_hex())
    }

    fn to_cid(self) -> Cid {
        let hash = Multihash::<64>::wrap(SHA2_256, &self.0.0).expect("32-byte digest fits");
        Cid::new_v1(RAW_CODEC, hash)
    }
}

impl fmt::Display for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // CIDv1 renders as lowercase base32 with the `b` multibase prefix.
        write!(f, "{}", self.to_cid())
    }
}

impl fmt::Debug for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentId({self})")
    }
}

impl FromStr for ContentId {
    type Err = ProtocolError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Some(hex_digest) = text.strip_prefix(SHA256_PREFIX) {
            return parse_hex_digest(hex_digest).map(Self).ok_or_else(|| {
                ProtocolError::InvalidCid {
                    text: text.to_string(),
                    reason: "expected sha256: followed by 64 hex digits".into(),
                }
            });
        }
        let invalid = |reason: String| ProtocolError::InvalidCid {
            text: text.to_string(),
            reason,
        };
        let cid = Cid::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if cid.version() != cid::Version::V1 {
            return Err(invalid("only CIDv1 is accepted".into()));
        }
        if cid.codec() != RAW_CODEC {
            return Err(invalid(format!(
                "codec 0x{:x} is not raw (0x55)",
                cid.codec()
            )));
        }
        let hash = cid.hash();
        if hash.code() != SHA2_256 || hash.digest().len() != 32 {
            return Err(invalid("multihash is not sha2-256".into()));
        }
        let mut digest = [0u8; 32];
        digest.copy_from_slice(hash.digest());
        Ok(Self(Sha256Digest(digest)))
    }
}

fn parse_hex_digest(text: &str) -> Option<Sha256Digest> {
    if text.len() != 64 {
        return None;
    }
    let mut digest = [0u8; 32];
    hex::decode_to_slice(text, &mut digest).ok()?;
    Some(Sha256Digest(digest))
}

serde_via_text!(ContentId);

/// The spec's `contentHash` value: always written `sha256:<hex>` of the bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ContentHash(pub Sha256Digest);

impl ContentHash {
    /// Hashes `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256Digest::of(bytes))
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SHA256_PREFIX}{}", self.0.to_hex())
    }
}

impl FromStr for ContentHash {
    type Err = ProtocolError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        // A CID names the same digest, so both forms are accepted on input.
        ContentId::from_str(text).map(|cid| Self(cid.digest()))
    }
}

serde_via_text!(ContentHash);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_bytes_have_the_well_known_cid() {
        // sha256("") is e3b0c442…; its raw CIDv1 is a published constant.
        let cid = ContentId::of_bytes(b"");
        assert_eq!(
            cid.to_string(),
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
        );
        assert_eq!(
            cid.to_sha256_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn sha256_form_and_cid_form_name_the_same_digest() {
        let cid = ContentId::of_bytes(b"hello");
        let via_hex: ContentId = cid.to_sha256_string().parse().unwrap();
        let via_cid: ContentId = cid.to_string().parse().unwrap();
        assert_eq!(via_hex, cid);
        assert_eq!(via_cid, cid);
    }

    #[test]
    fn rejects_malformed_and_foreign_cids() {
        for bad in [
            "sha256:abc",
            "sha256:zz3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "not-a-cid",
            // CIDv0 (dag-pb, base58)
            "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG",
        ] {
            assert!(ContentId::from_str(bad).is_err(), "{bad} should be refused");
        }
        let digest = Sha256Digest::of(b"x").0;
        let dag_json = Cid::new_v1(0x0129, Multihash::<64>::wrap(SHA2_256, &digest).unwrap());
        assert!(ContentId::from_str(&dag_json.to_string()).is_err());
        let sha512 = Cid::new_v1(RAW_CODEC, Multihash::<64>::wrap(0x13, &[7u8; 64]).unwrap());
        assert!(ContentId::from_str(&sha512.to_string()).is_err());
    }

    #[test]
    fn one_byte_changes_the_cid() {
        assert_ne!(ContentId::of_bytes(b"abc"), ContentId::of_bytes(b"abd"));
    }
}
