//! The x402 `bazaar` discovery extension of a paid route: what x402 catalogs index — the
//! route's method and JSON body (an example and its JSON Schema, from the capability's
//! input schema) and its output schema.

use serde_json::{Map, Value, json};

/// The extension's key in a 402 challenge's `extensions`.
pub const BAZAAR: &str = "bazaar";

/// The paid route a `bazaar` extension describes.
pub struct BazaarRoute<'a> {
    /// The capability the route runs.
    pub capability_id: &'a str,
    /// Its input JSON Schema.
    pub input_schema: &'a Value,
    /// Its output JSON Schema.
    pub output_schema: &'a Value,
    /// The body is the bare input (a capability's own route), not `{"capabilityId", "input"}`.
    pub bare_input: bool,
}

/// The `bazaar` extension (`{info, schema}`) for `route`, a POST with a JSON body.
pub fn extension(route: &BazaarRoute<'_>) -> Value {
    let input_example = example_of(route.input_schema);
    let (body, body_schema) = if route.bare_input {
        (input_example, route.input_schema.clone())
    } else {
        (
            json!({"capabilityId": route.capability_id, "input": input_example}),
            json!({
                "type": "object",
                "properties": {
                    "capabilityId": {"const": route.capability_id},
                    "input": route.input_schema,
                    "sync": {"type": "boolean"}
                },
                "required": ["input"]
            }),
        )
    };
    json!({
        "info": {
            "input": {"type": "http", "method": "POST", "bodyType": "json", "body": body},
            "output": {"type": "json"}
        },
        "schema": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {
                "input": {
                    "type": "object",
                    "properties": {
                        "type": {"type": "string", "const": "http"},
                        "method": {"type": "string", "enum": ["POST"]},
                        "bodyType": {"type": "string", "enum": ["json"]},
                        "body": body_schema
                    },
                    "required": ["type", "method", "bodyType", "body"],
                    "additionalProperties": false
                },
                "output": {
                    "type": "object",
                    "properties": {
                        "type": {"type": "string"},
                        "example": route.output_schema
                    }
                }
            },
            "required": ["input"]
        }
    })
}

/// A value that satisfies the common parts of `schema`: `const`, the first of `enum` or
/// `examples`, `default`, and by `type` an object with its required properties, an empty
/// array, the minimum number, `false`, or a string (`https://example.com/` for URIs).
fn example_of(schema: &Value) -> Value {
    if let Some(value) = schema.get("const") {
        return value.clone();
    }
    for key in ["examples", "enum"] {
        if let Some(first) = schema.get(key).and_then(|v| v.get(0)) {
            return first.clone();
        }
    }
    if let Some(value) = schema.get("default") {
        return value.clone();
    }
    let kind = match schema.get("type") {
        Some(Value::Array(kinds)) => kinds.first().and_then(Value::as_str),
        Some(kind) => kind.as_str(),
        None => None,
    };
    match kind {
        Some("object") => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let required = schema.get("required").and_then(Value::as_array);
            let mut example = Map::new();
            for name in required.into_iter().flatten().filter_map(Value::as_str) {
                let property = properties.and_then(|p| p.get(name)).unwrap_or(&Value::Null);
                example.insert(name.to_string(), example_of(property));
            }
            Value::Object(example)
        }
        Some("array") => json!([]),
        Some("integer" | "number") => schema.get("minimum").cloned().unwrap_or(json!(0)),
        Some("boolean") => json!(false),
        Some("null") => Value::Null,
        Some("string") if schema.get("format").and_then(Value::as_str) == Some("uri") => {
            json!("https://example.com/")
        }
        Some("string") => json!("text"),
        _ => json!({}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples_satisfy_the_schemas_they_come_from() {
        for schema in [
            json!({"type": "object", "properties": {"url": {"type": "string", "format": "uri", "pattern": "^https?://"}, "render": {"enum": ["never", "auto"]}}, "required": ["url"], "additionalProperties": false}),
            json!({"type": "object", "properties": {"value": {}, "select": {"type": "array", "items": {"type": "string"}}}, "required": ["value", "select"]}),
            json!({"type": "object", "properties": {"n": {"type": "integer", "minimum": 3}, "b": {"type": "boolean"}, "c": {"const": 7}}, "required": ["n", "b", "c"]}),
        ] {
            let example = example_of(&schema);
            let validator = jsonschema::validator_for(&schema).unwrap();
            assert!(validator.is_valid(&example), "{example} against {schema}");
        }
    }

    #[test]
    fn the_extension_describes_the_body_a_route_takes() {
        let input = json!({"type": "object", "properties": {"url": {"type": "string", "format": "uri"}}, "required": ["url"]});
        let output = json!({"type": "object"});
        let tasks = extension(&BazaarRoute {
            capability_id: "web.page_to_markdown@1",
            input_schema: &input,
            output_schema: &output,
            bare_input: false,
        });
        assert_eq!(
            tasks["info"]["input"]["body"],
            json!({"capabilityId": "web.page_to_markdown@1", "input": {"url": "https://example.com/"}})
        );
        let alias = extension(&BazaarRoute {
            capability_id: "web.page_to_markdown@1",
            input_schema: &input,
            output_schema: &output,
            bare_input: true,
        });
        assert_eq!(
            alias["info"]["input"]["body"],
            json!({"url": "https://example.com/"})
        );
        for extension in [tasks, alias] {
            let validator = jsonschema::validator_for(&extension["schema"]).unwrap();
            assert!(validator.is_valid(&extension["info"]), "{extension}");
        }
    }
}
