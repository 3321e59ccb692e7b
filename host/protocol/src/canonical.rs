//! RFC 8785 (JCS) canonical JSON: the only byte form d402 hashes or signs.

use serde::Serialize;

use crate::error::ProtocolError;

/// Serialises `value` to its RFC 8785 canonical bytes.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, ProtocolError> {
    serde_jcs::to_vec(value).map_err(|e| ProtocolError::Canonicalization(e.to_string()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    fn canonical(value: &serde_json::Value) -> String {
        String::from_utf8(super::to_vec(value).unwrap()).unwrap()
    }

    #[test]
    fn sorts_keys_and_drops_whitespace() {
        let value = json!({"b": 1, "a": {"d": [1, 2], "c": "x"}});
        assert_eq!(canonical(&value), r#"{"a":{"c":"x","d":[1,2]},"b":1}"#);
    }

    #[test]
    fn numbers_use_the_ecmascript_form() {
        // RFC 8785 section 3.2.2.3: numbers serialise as ECMAScript does.
        let value = json!([1.0, 0.009, 1e21, -0.0]);
        assert_eq!(canonical(&value), "[1,0.009,1e+21,0]");
    }

    #[test]
    fn escapes_only_what_rfc8785_requires() {
        let value = json!("é\u{1}\"/");
        assert_eq!(canonical(&value), "\"é\\u0001\\\"/\"");
    }
}
