//! The protocol crate's error type.

use thiserror::Error;

/// Everything that can go wrong while parsing, hashing, signing or validating protocol objects.
#[derive(Debug, Error)]
pub enum ProtocolError {
    /// A text that should be a CID or `sha256:` digest is not one.
    #[error("invalid content id {text:?}: {reason}")]
    InvalidCid {
        /// The offending text.
        text: String,
        /// Why it was refused.
        reason: String,
    },
    /// A value could not be put in canonical form.
    #[error("cannot canonicalise JSON: {0}")]
    Canonicalization(String),
    /// A public key, secret key or signature is malformed.
    #[error("invalid {what}: {reason}")]
    InvalidKey {
        /// Which kind of key material.
        what: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// A signature does not verify for the claimed signer and object type.
    #[error("signature does not verify: {0}")]
    BadSignature(String),
    /// A document does not parse into the expected object.
    #[error("{path}: {reason}")]
    Malformed {
        /// JSON path of the defect (`.` when it is the whole document).
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// An object parsed but breaks a protocol rule.
    #[error("{}", format_defects(.0))]
    Invalid(Vec<Defect>),
}

/// One rule an object breaks: which field and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defect {
    /// Dotted path of the field, e.g. `limits.deadlineMs`.
    pub field: String,
    /// Why the value is refused.
    pub reason: String,
}

impl Defect {
    /// Creates a defect for `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

fn format_defects(defects: &[Defect]) -> String {
    defects
        .iter()
        .map(|d| format!("{}: {}", d.field, d.reason))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Collects defects while checking an object and turns them into one error.
#[derive(Default, Debug)]
pub struct Defects(Vec<Defect>);

impl Defects {
    /// Records a defect.
    pub fn push(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.0.push(Defect::new(field, reason));
    }

    /// Records a defect when `ok` is false.
    pub fn check(&mut self, ok: bool, field: &str, reason: impl Into<String>) {
        if !ok {
            self.push(field, reason);
        }
    }

    /// `Ok(())` when nothing was recorded, otherwise every defect at once.
    pub fn into_result(self) -> Result<(), ProtocolError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ProtocolError::Invalid(self.0))
        }
    }
}

/// Parses a JSON document into `T`, naming the path of the first defect.
pub fn parse_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, ProtocolError> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        ProtocolError::Malformed {
            path,
            reason: e.into_inner().to_string(),
        }
    })?;
    deserializer.end().map_err(|e| ProtocolError::Malformed {
        path: ".".into(),
        reason: e.to_string(),
    })?;
    Ok(value)
}

/// Converts a JSON value into `T`, naming the path of the first defect.
pub fn from_value<T: serde::de::DeserializeOwned>(
    value: serde_json::Value,
) -> Result<T, ProtocolError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        ProtocolError::Malformed {
            path,
            reason: e.into_inner().to_string(),
        }
    })
}
