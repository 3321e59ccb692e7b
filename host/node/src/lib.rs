//! The d402 node: the gateway HTTP API with the x402-style 402 flow, a local worker and
//! validator (single mode), settlement on the simulated payment rail, and durable state in
//! an embedded redb store (`<state>/node.redb`).
//!
//! Phase 1: one process holds all roles; remote workers, race/quorum modes and the real
//! payment rails come later (see the README's "Not there yet").

pub mod client;
pub mod config;
pub mod gateway;
pub mod installed;
pub mod payment;
pub mod store;

pub use config::{NodeArgs, NodeConfig, Role};
pub use gateway::{Gateway, router, serve};
pub use installed::find_installed;
pub use payment::{
    PaymentPayload, PaymentRequired, PaymentRequirements, PaymentResponse, SimulatedAuthorization,
    SimulatedRail, task_binding,
};
pub use store::{NodeStore, StoreError, TaskRecord};
