//! The d402 gateway's public HTTP API as data, shared by the server (`d402-node`) and its
//! clients: the headers it sets, each capability's paid route, its OpenAPI 3.1 document
//! ([`document`]) and the x402 `bazaar` extension of its paid routes.

pub mod admin;
mod bazaar;
pub mod documents;
mod openapi;

pub use bazaar::{BAZAAR, BazaarRoute, extension as bazaar_extension};

pub use openapi::{
    Offer, PAGE_TO_MARKDOWN_ALIAS, PaidOperation, capability_path, document, dollars, payment_info,
};

/// Response headers set to `true` on a paid request replayed with the same proof and body
/// (the same task, charged once): the d402 name and the legacy `dnc` one.
pub const IDEMPOTENT_REPLAY_HEADERS: [&str; 2] =
    ["x-d402-idempotent-replay", "x-dnc-idempotent-replay"];
