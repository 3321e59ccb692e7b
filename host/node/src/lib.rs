//! The d402 node: the gateway HTTP API with the x402-style 402 flow, the served capability
//! catalog and its acceptance policy, a local worker pool executing single, race and quorum
//! tasks, validators, settlement on the simulated payment rail, and durable state in an
//! embedded redb store (`<state>/node.redb`).
//!
//! Remote workers (the peer network) and the real payment rails come later (see the
//! README's "Not there yet").

pub mod catalog;
pub mod client;
pub mod config;
pub mod engine;
pub mod gateway;
pub mod http;
pub mod installed;
pub mod openapi;
pub mod payment;
pub mod run;
pub mod settlement;
pub mod store;
pub mod validation;
pub mod worker;

pub use config::{NodeArgs, NodeConfig, Role};
pub use gateway::Gateway;
pub use http::{router, serve};
pub use installed::find_installed;
pub use payment::{
    PaymentPayload, PaymentRequired, PaymentRequirements, PaymentResponse, SimulatedAuthorization,
    SimulatedRail, task_binding,
};
pub use store::{NodeStore, StoreError, TaskRecord};
