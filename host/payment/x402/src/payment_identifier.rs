//! The `payment-identifier` extension: a client-chosen idempotency key carried in
//! `PaymentPayload.extensions["payment-identifier"].info.id` (16 to 128 characters of
//! `A-Za-z0-9_-`). The server declares support in its challenge's `extensions`.

use serde_json::{Map, Value, json};

/// The extension's name.
pub const PAYMENT_IDENTIFIER: &str = "payment-identifier";
/// Shortest allowed id.
pub const MIN_LENGTH: usize = 16;
/// Longest allowed id.
pub const MAX_LENGTH: usize = 128;

/// Why a payment identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("payment-identifier: {0}")]
pub struct InvalidPaymentIdentifier(pub String);

/// The declaration a server puts in `PaymentRequired.extensions`.
pub fn declaration(required: bool) -> Value {
    json!({
        "info": {"required": required},
        "schema": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {
                "required": {"type": "boolean"},
                "id": {"type": "string", "minLength": MIN_LENGTH, "maxLength": MAX_LENGTH,
                       "pattern": "^[a-zA-Z0-9_-]+$"}
            },
            "required": ["required"]
        }
    })
}

/// Whether `id` is a well-formed payment identifier.
pub fn is_valid(id: &str) -> bool {
    (MIN_LENGTH..=MAX_LENGTH).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Reads the id from a payload's `extensions`: `Ok(None)` when the client sent none, an
/// error when the extension is present but its id is missing or malformed.
pub fn read(extensions: &Map<String, Value>) -> Result<Option<String>, InvalidPaymentIdentifier> {
    let Some(extension) = extensions.get(PAYMENT_IDENTIFIER) else {
        return Ok(None);
    };
    match extension.pointer("/info/id") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(id)) if is_valid(id) => Ok(Some(id.clone())),
        Some(other) => Err(InvalidPaymentIdentifier(format!(
            "id {other} must be {MIN_LENGTH} to {MAX_LENGTH} characters of A-Z a-z 0-9 _ -"
        ))),
    }
}

/// Puts `id` into `extensions` as a client does.
pub fn append(extensions: &mut Map<String, Value>, id: &str) {
    extensions.insert(
        PAYMENT_IDENTIFIER.into(),
        json!({"info": {"required": false, "id": id}}),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_append_writes_and_refuses_bad_ids() {
        let mut extensions = Map::new();
        assert_eq!(read(&extensions), Ok(None));
        append(&mut extensions, "pay_0123456789abcdef");
        assert_eq!(read(&extensions), Ok(Some("pay_0123456789abcdef".into())));
        for bad in ["short", "has space in it here", &"x".repeat(129)] {
            append(&mut extensions, bad);
            assert!(read(&extensions).is_err(), "{bad:?} accepted");
        }
        extensions.insert(PAYMENT_IDENTIFIER.into(), json!({"info": {"id": 7}}));
        assert!(read(&extensions).is_err());
        extensions.insert(PAYMENT_IDENTIFIER.into(), declaration(false));
        assert_eq!(read(&extensions), Ok(None));
    }
}
