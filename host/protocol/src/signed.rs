//! Domain-separated signatures over canonical JSON.
//!
//! A signature covers `d402/<object-type>/v1`, a zero byte, and the RFC 8785 form of the
//! payload, so a signature made for one kind of object never verifies as another.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::canonical;
use crate::content_id::ContentId;
use crate::error::ProtocolError;
use crate::keys::{Keypair, PublicKey, Signature};

/// A protocol object that is published under a signature.
pub trait SignedObject: Serialize + DeserializeOwned {
    /// Kebab-case name of the object type; part of every signature's domain.
    const OBJECT_TYPE: &'static str;
}

/// The exact bytes a signature over `payload` of `object_type` covers.
pub fn signing_message<T: Serialize>(
    object_type: &str,
    payload: &T,
) -> Result<Vec<u8>, ProtocolError> {
    let mut message = format!("d402/{object_type}/v1").into_bytes();
    message.push(0);
    message.extend(canonical::to_vec(payload)?);
    Ok(message)
}

/// A signed envelope: `{"type", "payload", "signer", "signature"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[serde(bound(serialize = "T: Serialize", deserialize = "T: DeserializeOwned"))]
pub struct Signed<T> {
    /// The object type, which must equal `T::OBJECT_TYPE`.
    #[serde(rename = "type")]
    pub object_type: String,
    /// The signed object.
    pub payload: T,
    /// The signer's public key.
    pub signer: PublicKey,
    /// Signature over [`signing_message`].
    pub signature: Signature,
}

impl<T: SignedObject> Signed<T> {
    /// Signs `payload` with `key`.
    pub fn sign(payload: T, key: &Keypair) -> Result<Self, ProtocolError> {
        let signature = key.sign_raw(&signing_message(T::OBJECT_TYPE, &payload)?);
        Ok(Self {
            object_type: T::OBJECT_TYPE.to_string(),
            payload,
            signer: key.public(),
            signature,
        })
    }

    /// Checks the object type and the signature; returns the payload when both hold.
    pub fn verify(&self) -> Result<&T, ProtocolError> {
        if self.object_type != T::OBJECT_TYPE {
            return Err(ProtocolError::BadSignature(format!(
                "envelope type {:?} is not {:?}",
                self.object_type,
                T::OBJECT_TYPE
            )));
        }
        let message = signing_message(T::OBJECT_TYPE, &self.payload)?;
        self.signer.verify(&message, &self.signature)?;
        Ok(&self.payload)
    }

    /// The CID of the whole envelope (payload and signature).
    pub fn cid(&self) -> Result<ContentId, ProtocolError> {
        ContentId::of_json(self)
    }
}

/// One signer's signature inside a [`ThresholdSigned`] envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignatureEntry {
    /// The signer's public key.
    pub signer: PublicKey,
    /// Signature over [`signing_message`].
    pub signature: Signature,
}

/// An envelope signed by several keys, valid when enough trusted keys signed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[serde(bound(serialize = "T: Serialize", deserialize = "T: DeserializeOwned"))]
pub struct ThresholdSigned<T> {
    /// The object type, which must equal `T::OBJECT_TYPE`.
    #[serde(rename = "type")]
    pub object_type: String,
    /// The signed object.
    pub payload: T,
    /// Signatures collected so far.
    pub signatures: Vec<SignatureEntry>,
}

impl<T: SignedObject> ThresholdSigned<T> {
    /// Starts an envelope with no signatures.
    pub fn new(payload: T) -> Self {
        Self {
            object_type: T::OBJECT_TYPE.to_string(),
            payload,
            signatures: Vec::new(),
        }
    }

    /// Adds `key`'s signature (replacing an earlier one by the same key).
    pub fn add_signature(&mut self, key: &Keypair) -> Result<(), ProtocolError> {
        let signature = key.sign_raw(&signing_message(T::OBJECT_TYPE, &self.payload)?);
        self.signatures.retain(|entry| entry.signer != key.public());
        self.signatures.push(SignatureEntry {
            signer: key.public(),
            signature,
        });
        Ok(())
    }

    /// Returns the payload when at least `threshold` distinct keys of `trusted` signed it.
    /// Signatures by untrusted keys are ignored; a bad signature by a trusted key is an error.
    pub fn verify_threshold(
        &self,
        trusted: &[PublicKey],
        threshold: usize,
    ) -> Result<&T, ProtocolError> {
        if self.object_type != T::OBJECT_TYPE {
            return Err(ProtocolError::BadSignature(format!(
                "envelope type {:?} is not {:?}",
                self.object_type,
                T::OBJECT_TYPE
            )));
        }
        if threshold == 0 {
            return Err(ProtocolError::BadSignature(
                "threshold must be at least 1".into(),
            ));
        }
        let message = signing_message(T::OBJECT_TYPE, &self.payload)?;
        let mut counted: Vec<PublicKey> = Vec::new();
        for entry in &self.signatures {
            if !trusted.contains(&entry.signer) || counted.contains(&entry.signer) {
                continue;
            }
            entry.signer.verify(&message, &entry.signature)?;
            counted.push(entry.signer);
        }
        if counted.len() < threshold {
            return Err(ProtocolError::BadSignature(format!(
                "{} trusted signature(s), {threshold} required",
                counted.len()
            )));
        }
        Ok(&self.payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Note {
        text: String,
    }
    impl SignedObject for Note {
        const OBJECT_TYPE: &'static str = "test-note";
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Memo {
        text: String,
    }
    impl SignedObject for Memo {
        const OBJECT_TYPE: &'static str = "test-memo";
    }

    fn note() -> Note {
        Note { text: "hi".into() }
    }

    #[test]
    fn verifies_and_refuses_other_keys_and_changes() {
        let a = Keypair::from_seed(&[1; 32]);
        let b = Keypair::from_seed(&[2; 32]);
        let signed = Signed::sign(note(), &a).unwrap();
        assert!(signed.verify().is_ok());

        let mut wrong_signer = signed.clone();
        wrong_signer.signer = b.public();
        assert!(wrong_signer.verify().is_err());

        let mut changed = signed.clone();
        changed.payload.text = "hj".into();
        assert!(changed.verify().is_err());
    }

    #[test]
    fn a_signature_for_one_type_does_not_verify_as_another() {
        let key = Keypair::from_seed(&[1; 32]);
        let signed = Signed::sign(note(), &key).unwrap();
        // Same payload bytes, relabelled and parsed as another object type.
        let mut value = serde_json::to_value(&signed).unwrap();
        value["type"] = json!("test-memo");
        let as_memo: Signed<Memo> = serde_json::from_value(value).unwrap();
        assert!(as_memo.verify().is_err());
        // Even keeping the original label, a Memo envelope refuses it.
        let kept: Signed<Memo> =
            serde_json::from_value(serde_json::to_value(&signed).unwrap()).unwrap();
        assert!(kept.verify().is_err());
    }

    #[test]
    fn threshold_counts_distinct_trusted_signers() {
        let keys: Vec<Keypair> = (1..=3).map(|i| Keypair::from_seed(&[i; 32])).collect();
        let trusted: Vec<PublicKey> = keys.iter().map(Keypair::public).collect();
        let outsider = Keypair::from_seed(&[9; 32]);
        let mut envelope = ThresholdSigned::new(note());
        envelope.add_signature(&keys[0]).unwrap();
        envelope.add_signature(&keys[0]).unwrap();
        envelope.add_signature(&outsider).unwrap();
        assert!(envelope.verify_threshold(&trusted, 2).is_err());
        envelope.add_signature(&keys[2]).unwrap();
        assert!(envelope.verify_threshold(&trusted, 2).is_ok());
        envelope.payload.text = "changed".into();
        assert!(envelope.verify_threshold(&trusted, 2).is_err());
    }
}
