//! EIP-3009 `TransferWithAuthorization`: the x402 `exact` EVM payload, its EIP-712 signing
//! hash under a token's domain, signing (the buyer) and signer recovery (the gateway).

use alloy::primitives::{Address, B256, Signature, U256};
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol;
use alloy::sol_types::{Eip712Domain, SolStruct};
use serde::{Deserialize, Serialize};

sol! {
    /// The EIP-712 struct a payer signs (EIP-3009).
    struct TransferWithAuthorization {
        address from;
        address to;
        uint256 value;
        uint256 validAfter;
        uint256 validBefore;
        bytes32 nonce;
    }
}

/// A token's EIP-712 domain: what a signature is bound to besides the transfer terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenDomain {
    /// The domain name (`"USD Coin"` for Base USDC, `"USDC"` on Base Sepolia).
    pub name: String,
    /// The domain version (`"2"`).
    pub version: String,
    /// The chain id (from the CAIP-2 network).
    pub chain_id: u64,
    /// The token contract.
    pub token: Address,
}

impl TokenDomain {
    fn eip712(&self) -> Eip712Domain {
        Eip712Domain::new(
            Some(self.name.clone().into()),
            Some(self.version.clone().into()),
            Some(U256::from(self.chain_id)),
            Some(self.token),
            None,
        )
    }
}

/// The `authorization` of an x402 `exact` EVM payload: the EIP-3009 terms, numbers as
/// decimal strings and the nonce as 32-byte hex, as x402 clients send them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthorizationTerms {
    /// The payer.
    pub from: Address,
    /// The payee (must be the requirement's `payTo`).
    pub to: Address,
    /// Atomic units.
    #[serde(with = "decimal")]
    pub value: U256,
    /// Unix seconds after which the authorization is valid.
    #[serde(with = "decimal")]
    pub valid_after: U256,
    /// Unix seconds before which it must be used.
    #[serde(with = "decimal")]
    pub valid_before: U256,
    /// The payer's once-only nonce.
    pub nonce: B256,
}

/// The x402 `exact` EVM payload: `{signature, authorization}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExactEvmPayload {
    /// The 65-byte r‖s‖v signature, 0x hex.
    pub signature: alloy::primitives::Bytes,
    /// The signed terms.
    pub authorization: AuthorizationTerms,
}

/// Why an authorization's signature does not name its `from`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// Not a 65-byte secp256k1 signature.
    #[error("the signature is not a 65-byte secp256k1 signature")]
    Malformed,
    /// A valid signature by another key (or over another domain or terms).
    #[error("signed by {recovered}, not by the authorization's from {from}")]
    WrongSigner {
        /// Who signed.
        recovered: Address,
        /// Who should have.
        from: Address,
    },
}

impl AuthorizationTerms {
    fn typed(&self) -> TransferWithAuthorization {
        TransferWithAuthorization {
            from: self.from,
            to: self.to,
            value: self.value,
            validAfter: self.valid_after,
            validBefore: self.valid_before,
            nonce: self.nonce,
        }
    }

    /// The EIP-712 hash the payer signs under `domain`.
    pub fn signing_hash(&self, domain: &TokenDomain) -> B256 {
        self.typed().eip712_signing_hash(&domain.eip712())
    }

    /// Signs the terms under `domain` with `key` (the buyer's side).
    pub fn sign(
        &self,
        domain: &TokenDomain,
        key: &PrivateKeySigner,
    ) -> Result<alloy::primitives::Bytes, alloy::signers::Error> {
        let signature = key.sign_hash_sync(&self.signing_hash(domain))?;
        Ok(signature.as_bytes().to_vec().into())
    }
}

impl ExactEvmPayload {
    /// Checks that the signature over the terms under `domain` is `from`'s. Malleable
    /// (high-`s`) signatures are refused, as the token refuses them.
    pub fn verify_signer(&self, domain: &TokenDomain) -> Result<(), SignatureError> {
        let signature =
            Signature::from_raw(&self.signature).map_err(|_| SignatureError::Malformed)?;
        if signature.normalize_s().is_some() {
            return Err(SignatureError::Malformed);
        }
        let recovered = signature
            .recover_address_from_prehash(&self.authorization.signing_hash(domain))
            .map_err(|_| SignatureError::Malformed)?;
        if recovered != self.authorization.from {
            return Err(SignatureError::WrongSigner {
                recovered,
                from: self.authorization.from,
            });
        }
        Ok(())
    }
}

/// `U256` as a decimal string (x402 sends numbers as strings); hex `0x…` is accepted too.
mod decimal {
    use alloy::primitives::U256;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(value: &U256, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(value)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<U256, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse::<U256>()
            .map_err(|_| D::Error::custom(format!("{text:?} is not an unsigned integer")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain() -> TokenDomain {
        TokenDomain {
            name: "USD Coin".into(),
            version: "2".into(),
            chain_id: 8453,
            token: "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
                .parse()
                .unwrap(),
        }
    }

    fn signed(key: &PrivateKeySigner, domain: &TokenDomain) -> ExactEvmPayload {
        let authorization = AuthorizationTerms {
            from: key.address(),
            to: Address::repeat_byte(0xb0),
            value: U256::from(10_000u64),
            valid_after: U256::ZERO,
            valid_before: U256::from(2_000_000_000u64),
            nonce: B256::repeat_byte(7),
        };
        ExactEvmPayload {
            signature: authorization.sign(domain, key).unwrap(),
            authorization,
        }
    }

    #[test]
    fn a_signature_verifies_under_its_domain_only() {
        let key = PrivateKeySigner::random();
        let payload = signed(&key, &domain());
        assert_eq!(payload.verify_signer(&domain()), Ok(()));
        for other in [
            TokenDomain {
                chain_id: 84532,
                ..domain()
            },
            TokenDomain {
                name: "USDC".into(),
                ..domain()
            },
            TokenDomain {
                version: "1".into(),
                ..domain()
            },
            TokenDomain {
                token: Address::repeat_byte(1),
                ..domain()
            },
        ] {
            assert!(matches!(
                payload.verify_signer(&other),
                Err(SignatureError::WrongSigner { .. })
            ));
        }
    }

    #[test]
    fn changed_terms_a_stranger_and_garbage_are_refused() {
        let key = PrivateKeySigner::random();
        let mut payload = signed(&key, &domain());
        payload.authorization.value = U256::from(10_001u64);
        assert!(matches!(
            payload.verify_signer(&domain()),
            Err(SignatureError::WrongSigner { .. })
        ));
        let stranger = signed(&PrivateKeySigner::random(), &domain());
        let forged = ExactEvmPayload {
            authorization: signed(&key, &domain()).authorization,
            signature: stranger.signature,
        };
        assert!(matches!(
            forged.verify_signer(&domain()),
            Err(SignatureError::WrongSigner { .. })
        ));
        let garbage = ExactEvmPayload {
            signature: vec![1u8; 64].into(),
            ..signed(&key, &domain())
        };
        assert_eq!(
            garbage.verify_signer(&domain()),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn the_wire_form_is_x402s() {
        let key = PrivateKeySigner::random();
        let payload = signed(&key, &domain());
        let json = serde_json::to_value(&payload).unwrap();
        assert_eq!(json["authorization"]["value"], "10000");
        assert_eq!(json["authorization"]["validBefore"], "2000000000");
        assert!(json["signature"].as_str().unwrap().starts_with("0x"));
        assert_eq!(json["signature"].as_str().unwrap().len(), 2 + 130);
        let back: ExactEvmPayload = serde_json::from_value(json).unwrap();
        assert_eq!(back, payload);
        let mut bad = serde_json::to_value(&payload).unwrap();
        bad["authorization"]["value"] = "-1".into();
        assert!(serde_json::from_value::<ExactEvmPayload>(bad).is_err());
    }
}
