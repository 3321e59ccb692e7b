//! The gateway's OpenAPI 3.1 document (`GET /openapi.json`): every route of the gateway's
//! router (`d402_node::http::route_table`), the shapes its handlers really return, and
//! `x-payment-info` on the paid operations (what listing services read: method, currency,
//! decimal amount, SKU, an integer pricing version, and `offers[]` in base units, one per
//! payment rail). Each capability sold has its own paid route ([`capability_path`]), so
//! each operation carries exactly one `x-payment-info`.
//!
//! [`document`] is pure: the gateway hands it its base URL and the operations it sells.

use d402_protocol::{Amount, Price};
use serde_json::{Map, Value, json};

/// The paid route of `web.page_to_markdown@1` (see [`capability_path`]).
pub const PAGE_TO_MARKDOWN_ALIAS: &str = "/v1/web/page-to-markdown";

/// The paid route of the capability `id@major`: `/v<major>/` and the id's dot-separated
/// segments as path segments, `_` spelled `-` (`web.page_to_markdown@1` →
/// `/v1/web/page-to-markdown`). Capability names hold only `a-z`, `0-9` and `_`, so no two
/// capabilities share a route.
pub fn capability_path(capability_id: &str) -> String {
    let (id, major) = capability_id
        .rsplit_once('@')
        .unwrap_or((capability_id, "1"));
    format!("/v{major}/{}", id.replace('.', "/").replace('_', "-"))
}

/// One capability the gateway sells, as the document describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct PaidOperation {
    /// Capability ID, e.g. `web.page_to_markdown@1` (the SKU).
    pub capability_id: String,
    /// Pricing version: increments whenever the SKU's price or unit changes.
    pub pricing_version: u64,
    /// All-in price of one task.
    pub price: Amount,
    /// How the price can be paid: one offer per enabled rail.
    pub offers: Vec<Offer>,
    /// The manifest's input JSON Schema.
    pub input_schema: Value,
    /// The manifest's output JSON Schema.
    pub output_schema: Value,
}

/// One way to pay a price: an `offers[]` entry of `x-payment-info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// The rail (its `--rail` name, e.g. `x402-base`).
    pub rail: String,
    /// How far the rail is from carrying real money (see `RailId::maturity`).
    pub maturity: String,
    /// The rail's network (CAIP-2 style, e.g. `eip155:8453`).
    pub network: String,
    /// Where the payment goes (`payTo`).
    pub pay_to: String,
    /// The amount in the asset's base units.
    pub amount: String,
    /// The asset (a symbol, or a token address on chains).
    pub currency: String,
}

/// A price as the decimal dollar string `x-payment-info` carries (`"0.01"`).
pub fn dollars(amount: Amount) -> String {
    Price(amount)
        .to_string()
        .trim_start_matches('$')
        .to_string()
}

/// The `x-payment-info` object of a paid operation.
pub fn payment_info(operation: &PaidOperation) -> Value {
    json!({
        "method": "x402",
        "currency": "USD",
        "amount": dollars(operation.price),
        "sku": operation.capability_id,
        "pricingVersion": operation.pricing_version,
        "offers": operation.offers.iter().map(|offer| json!({
            "intent": "charge",
            "method": "x402",
            "rail": offer.rail,
            "maturity": offer.maturity,
            "network": offer.network,
            "payTo": offer.pay_to,
            "amount": offer.amount,
            "currency": offer.currency
        })).collect::<Vec<_>>(),
        "creatorCommission": "included in the price; the policy is published in /.well-known/d402-gateway.json"
    })
}

/// The OpenAPI 3.1 document of a gateway reachable at `base_url` that sells `operations`,
/// whose fixed routes are documented by `paths` (the path items its handlers declare).
///
/// `POST /tasks` takes the capability's input schema and returns its output schema when
/// there is exactly one operation (any object otherwise); its `x-payment-info` is the
/// default capability's (the first operation: what a request naming none buys). Each
/// operation gets its own paid route ([`capability_path`]): `POST /tasks`'s operation with
/// its own `x-payment-info`, taking the task request or the bare input.
pub fn document(base_url: &str, operations: &[PaidOperation], paths: Map<String, Value>) -> Value {
    let single = match operations {
        [only] => Some(only),
        _ => None,
    };
    let mut schemas = components();
    let input = match single {
        Some(op) => {
            schemas.insert(
                "Input".into(),
                rebase_refs(&op.input_schema, "#/components/schemas/Input"),
            );
            schema_ref("Input")
        }
        None => json!({"type": "object"}),
    };
    let output = match single {
        Some(op) => {
            schemas.insert(
                "Output".into(),
                rebase_refs(&op.output_schema, "#/components/schemas/Output"),
            );
            schema_ref("Output")
        }
        None => json!({}),
    };
    let ids: Vec<&str> = operations
        .iter()
        .map(|op| op.capability_id.as_str())
        .collect();
    // The generated request and task documents carry the capabilities' own schemas.
    let mut capability_ids: Vec<Value> = ids.iter().map(|id| json!(id)).collect();
    capability_ids.push(Value::Null);
    overlay(&mut schemas, "TaskRequest", "input", &input);
    overlay(
        &mut schemas,
        "TaskRequest",
        "capabilityId",
        &json!({"enum": capability_ids}),
    );
    overlay(&mut schemas, "Task", "result", &output);
    overlay(&mut schemas, "Result", "result", &output);

    let mut paths = paths;
    let create = paths
        .get("/tasks")
        .and_then(|item| item.get("post"))
        .cloned()
        .unwrap_or_else(|| json!({}));
    if let (Some(default), Some(post)) = (
        operations.first(),
        paths
            .get_mut("/tasks")
            .and_then(|item| item.get_mut("post")),
    ) {
        post["x-payment-info"] = payment_info(default);
    }
    for op in operations {
        let name = op
            .capability_id
            .replace(|c: char| !c.is_ascii_alphanumeric(), "_");
        let bare_input = if single.is_some() {
            input.clone()
        } else {
            let component = format!("Input_{name}");
            schemas.insert(
                component.clone(),
                rebase_refs(
                    &op.input_schema,
                    &format!("#/components/schemas/{component}"),
                ),
            );
            schema_ref(&component)
        };
        let mut post = create.clone();
        post["operationId"] = json!(format!("createTask_{name}"));
        post["summary"] = json!(format!(
            "Paid route of {}: POST /tasks for this capability; takes the task request or \
             the bare input.",
            op.capability_id
        ));
        post["requestBody"]["content"]["application/json"]["schema"] =
            json!({"anyOf": [schema_ref("TaskRequest"), bare_input]});
        post["x-payment-info"] = payment_info(op);
        paths.insert(capability_path(&op.capability_id), json!({"post": post}));
    }

    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "d402 gateway",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Paid execution over HTTP 402: POST a task, answer the x402 challenge with \
                a PAYMENT-SIGNATURE, and read the result with its validation and settlement receipts."
        },
        "servers": [{"url": base_url.trim_end_matches('/')}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "x402": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "PAYMENT-SIGNATURE",
                    "description": "The x402 payment: base64 of the JSON PaymentPayload (components.schemas.PaymentPayload: \
                        the accepted requirements and the scheme's payload — on the simulated rail an ed25519-signed \
                        SimulatedAuthorization bound to the request body). The first, unpaid request goes without it \
                        and gets the 402 challenge."
                },
                "x402Legacy": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-PAYMENT",
                    "description": "Legacy name of PAYMENT-SIGNATURE, read only when PAYMENT-SIGNATURE is absent."
                }
            }
        }
    })
}

/// `schema` with its document-local `$ref`s (`#/$defs/...`) made relative to `base`, where
/// it is embedded in the OpenAPI document.
fn rebase_refs(schema: &Value, base: &str) -> Value {
    match schema {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| match (key.as_str(), value) {
                    ("$ref", Value::String(r)) if r.starts_with('#') => {
                        (key.clone(), json!(format!("{base}{}", &r[1..])))
                    }
                    _ => (key.clone(), rebase_refs(value, base)),
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| rebase_refs(v, base)).collect()),
        other => other.clone(),
    }
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// Sets property `property` of generated schema `schema` to `value` (the runtime overlay:
/// what depends on the capabilities sold), keeping its description.
fn overlay(schemas: &mut Map<String, Value>, schema: &str, property: &str, value: &Value) {
    let pointer = format!("/properties/{property}");
    if let Some(slot) = schemas
        .get_mut(schema)
        .and_then(|schema| schema.pointer_mut(&pointer))
    {
        let description = slot.get("description").cloned();
        *slot = value.clone();
        if let (Some(description), Some(object)) = (description, slot.as_object_mut()) {
            object.entry("description").or_insert(description);
        }
    }
}

/// The schemas that do not depend on the capability: those generated from the document
/// types, and the task, receipt and x402 shapes (still written here).
fn components() -> Map<String, Value> {
    let string = json!({"type": "string"});
    let entries = [
        (
            "PaymentPayload",
            json!({
                "type": "object",
                "description": "What PAYMENT-SIGNATURE carries, base64 (standard or URL-safe) of this JSON: \
                    the x402 v2 payment payload. `accepted` repeats the chosen entry of the challenge's \
                    `accepts` exactly; `payload` is the scheme's payload for that entry's network.",
                "required": ["x402Version", "accepted", "payload"],
                "properties": {
                    "x402Version": {"const": 2},
                    "resource": {"type": "object", "properties": {"url": string}},
                    "accepted": schema_ref("PaymentRequirements"),
                    "payload": {"oneOf": [
                        schema_ref("SimulatedPaymentAuthorization"),
                        schema_ref("ExactEvmPayload"),
                        schema_ref("ExactSvmPayload")
                    ]},
                    "extensions": {
                        "type": "object",
                        "description": "`payment-identifier`: {\"info\": {\"id\": \"<client idempotency key>\"}}."
                    }
                }
            }),
        ),
        (
            "SimulatedPaymentAuthorization",
            json!({
                "type": "object",
                "description": "The simulated rail's payload (network `d402:simulated`): an ed25519-signed \
                    envelope. The signature covers the bytes `d402/simulated-payment-authorization/v1`, one \
                    zero byte, then the RFC 8785 (JCS) form of `payload`; `signer` is the buyer's public key and \
                    pays. The buyer's balance on the gateway's ledger is debited once the task is admitted.",
                "required": ["type", "payload", "signer", "signature"],
                "additionalProperties": false,
                "properties": {
                    "type": {"const": "simulated-payment-authorization"},
                    "payload": schema_ref("SimulatedAuthorization"),
                    "signer": {"type": "string", "description": "The buyer's ed25519 public key, base58 (32 bytes)."},
                    "signature": {"type": "string", "description": "The ed25519 signature, base58 (64 bytes)."}
                }
            }),
        ),
        (
            "SimulatedAuthorization",
            json!({
                "type": "object",
                "required": ["network", "amount", "payTo", "nonce", "expiresAt", "taskBinding"],
                "additionalProperties": false,
                "properties": {
                    "network": {"type": "string", "description": "The challenge's `network`."},
                    "amount": {"type": "string", "pattern": "^[0-9]+$", "description": "Micro-dollars authorised, at least the challenge's `amount`."},
                    "payTo": {"type": "string", "description": "The challenge's `payTo`."},
                    "nonce": {"type": "string", "pattern": "^[0-9a-f]{16,128}$", "description": "Fresh random hex per payment (32 random bytes: 64 digits); a payment is consumed once."},
                    "expiresAt": {
                        "type": "string",
                        "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$",
                        "description": "RFC 3339 UTC with exactly three fractional digits (2026-12-05T10:00:00.000Z), \
                            the only form accepted because the signature covers it; in the future and at most the \
                            challenge's `maxTimeoutSeconds` (plus one minute of clock margin) away."
                    },
                    "taskBinding": {
                        "type": "string",
                        "pattern": "^sha256:[0-9a-f]{64}$",
                        "description": "`sha256:` and the lowercase hex SHA-256 of the RFC 8785 (JCS) form of the whole \
                            JSON request body this payment pays for; the same body must be sent with it."
                    }
                }
            }),
        ),
        (
            "ExactEvmPayload",
            json!({
                "type": "object",
                "description": "x402 `exact` on EVM networks (eip155:*): an EIP-3009 transferWithAuthorization signed \
                    (EIP-712) by `authorization.from`, as the x402 specification defines it.",
                "required": ["signature", "authorization"],
                "properties": {
                    "signature": {"type": "string", "pattern": "^0x[0-9a-fA-F]+$"},
                    "authorization": {
                        "type": "object",
                        "required": ["from", "to", "value", "validAfter", "validBefore", "nonce"],
                        "properties": {
                            "from": string, "to": string, "value": string,
                            "validAfter": string, "validBefore": string, "nonce": string
                        }
                    }
                }
            }),
        ),
        (
            "ExactSvmPayload",
            json!({
                "type": "object",
                "description": "x402 `exact` on Solana (solana:*): a base64 partially-signed transaction that the \
                    gateway co-signs as fee payer, as the x402 specification defines it.",
                "required": ["transaction"],
                "properties": {"transaction": string}
            }),
        ),
        (
            "Signed",
            json!({
                "type": "object",
                "required": ["type", "payload", "signer", "signature"],
                "properties": {"type": string, "payload": {"type": "object"}, "signer": string, "signature": string}
            }),
        ),
    ];
    let mut schemas = crate::documents::generated_schemas();
    schemas.extend(
        entries
            .into_iter()
            .map(|(name, schema)| (name.to_string(), schema)),
    );
    schemas
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Path items as the node's handlers declare them, reduced to what the document adds
    /// to: a free route and the paid operation.
    fn paths() -> Map<String, Value> {
        let paths = json!({
            "/health": {"get": {"operationId": "health", "responses": {}}},
            "/tasks": {"post": {
                "operationId": "createTask",
                "security": [{}, {"x402": []}],
                "requestBody": {"content": {"application/json": {"schema": schema_ref("TaskRequest")}}},
                "responses": {}
            }}
        });
        paths.as_object().cloned().unwrap()
    }

    fn operation() -> PaidOperation {
        PaidOperation {
            capability_id: "web.page_to_markdown@1".into(),
            pricing_version: 3,
            price: Amount::from_micros(10_000),
            offers: vec![Offer {
                rail: "simulated".into(),
                maturity: "development only".into(),
                network: "d402:simulated".into(),
                pay_to: "gateway".into(),
                amount: "10000".into(),
                currency: "USD".into(),
            }],
            input_schema: json!({"type": "object", "properties": {"url": {"type": "string"}}, "required": ["url"]}),
            output_schema: json!({"type": "object", "properties": {"markdown": {"type": "string"}}}),
        }
    }

    #[test]
    fn is_openapi_3_1_json_with_the_gateways_url() {
        let doc = document("http://127.0.0.1:8402/", &[operation()], paths());
        let text = serde_json::to_string(&doc).unwrap();
        let reparsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(reparsed["openapi"], "3.1.0");
        assert_eq!(reparsed["servers"][0]["url"], "http://127.0.0.1:8402");
    }

    #[test]
    fn each_capability_has_its_own_route_named_after_it() {
        assert_eq!(
            capability_path("web.page_to_markdown@1"),
            PAGE_TO_MARKDOWN_ALIAS
        );
        assert_eq!(
            capability_path("example.sub.extract_product@2"),
            "/v2/example/sub/extract-product"
        );
        let mut other = operation();
        other.capability_id = "util.json_transform@1".into();
        let doc = document("http://gw", &[other], paths());
        assert!(doc["paths"].get(PAGE_TO_MARKDOWN_ALIAS).is_none());
        assert!(doc["paths"]["/v1/util/json-transform"]["post"].is_object());
        assert!(doc["paths"]["/tasks"]["post"].is_object());
    }

    #[test]
    fn paid_operations_carry_the_price() {
        let doc = document("http://gw", &[operation()], paths());
        for path in ["/tasks", PAGE_TO_MARKDOWN_ALIAS] {
            let info = &doc["paths"][path]["post"]["x-payment-info"];
            assert_eq!(info["method"], "x402", "{path}");
            assert_eq!(info["currency"], "USD");
            assert_eq!(info["amount"], "0.01");
            assert_eq!(info["sku"], "web.page_to_markdown@1");
            assert_eq!(info["pricingVersion"], 3, "an integer");
            assert_eq!(
                info["offers"],
                json!([{"intent": "charge", "method": "x402", "rail": "simulated",
                        "maturity": "development only", "network": "d402:simulated",
                        "payTo": "gateway", "amount": "10000", "currency": "USD"}]),
                "base units, one offer per rail"
            );
        }
        assert!(
            doc["paths"]["/health"]["get"]
                .get("x-payment-info")
                .is_none(),
            "free routes are free"
        );
        // Each capability's route repeats POST /tasks's operation under its own id.
        let route = &doc["paths"][PAGE_TO_MARKDOWN_ALIAS]["post"];
        assert_eq!(route["operationId"], "createTask_web_page_to_markdown_1");
        assert_eq!(
            route["security"],
            doc["paths"]["/tasks"]["post"]["security"]
        );
        assert_eq!(
            doc["components"]["securitySchemes"]["x402"]["name"],
            "PAYMENT-SIGNATURE"
        );
        assert_eq!(dollars(Amount::from_micros(100)), "0.0001");
        assert_eq!(dollars(Amount::from_micros(2_000_000)), "2.00");
    }

    #[test]
    fn the_capability_schemas_are_embedded_and_every_reference_resolves() {
        let doc = document("http://gw", &[operation()], paths());
        let schemas = &doc["components"]["schemas"];
        assert_eq!(schemas["Input"], operation().input_schema);
        assert_eq!(schemas["Output"], operation().output_schema);
        assert_eq!(
            schemas["TaskRequest"]["properties"]["input"]["$ref"],
            "#/components/schemas/Input"
        );
        let mut refs = Vec::new();
        collect_refs(&doc, &mut refs);
        assert!(refs.len() > 10);
        for reference in refs {
            let pointer = reference.strip_prefix('#').expect("local reference");
            assert!(
                doc.pointer(pointer).is_some(),
                "{reference} does not resolve"
            );
        }
    }

    #[test]
    fn local_references_in_capability_schemas_follow_them() {
        let mut op = operation();
        op.input_schema = json!({"$defs": {"u": {"type": "string"}}, "properties": {"url": {"$ref": "#/$defs/u"}}});
        let doc = document("http://gw", &[op], paths());
        let reference = doc["components"]["schemas"]["Input"]["properties"]["url"]["$ref"]
            .as_str()
            .unwrap();
        assert_eq!(reference, "#/components/schemas/Input/$defs/u");
        assert_eq!(
            doc.pointer(&reference[1..]).unwrap(),
            &json!({"type": "string"})
        );
    }

    #[test]
    fn several_operations_take_any_object_and_each_carries_one_price() {
        let mut other = operation();
        other.capability_id = "util.json_transform@1".into();
        other.price = Amount::from_micros(100);
        let doc = document("http://gw", &[operation(), other], paths());
        let request = &doc["components"]["schemas"]["TaskRequest"];
        assert_eq!(request["properties"]["input"]["type"], "object");
        assert_eq!(request["required"], json!(["input"]));
        assert_eq!(
            request["properties"]["capabilityId"]["enum"],
            json!(["web.page_to_markdown@1", "util.json_transform@1", null])
        );
        let default = &doc["paths"]["/tasks"]["post"]["x-payment-info"];
        assert!(default.is_object(), "one object per operation: {default}");
        assert_eq!(default["sku"], "web.page_to_markdown@1", "the default's");
        let own = &doc["paths"]["/v1/util/json-transform"]["post"]["x-payment-info"];
        assert_eq!(own["sku"], "util.json_transform@1");
        assert_eq!(own["amount"], "0.0001");
        let alias = &doc["paths"][PAGE_TO_MARKDOWN_ALIAS]["post"];
        assert_eq!(alias["x-payment-info"]["amount"], "0.01");
        let bare =
            &alias["requestBody"]["content"]["application/json"]["schema"]["anyOf"][1]["$ref"];
        assert_eq!(bare, "#/components/schemas/Input_web_page_to_markdown_1");
        assert_eq!(
            doc["components"]["schemas"]["Input_web_page_to_markdown_1"],
            operation().input_schema
        );
    }

    fn collect_refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r.clone());
                }
                map.values().for_each(|v| collect_refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
            _ => {}
        }
    }
}
