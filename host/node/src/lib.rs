//! The d402 node: the gateway HTTP API with the x402-style 402 flow, the served capability
//! catalog and its acceptance policy, a local worker pool executing single, race and quorum
//! tasks, validators, and settlement through the enabled payment rails. Durable state is
//! `d402-store`'s.
//!
//! Payments go through the rails of `d402-payment` (the simulated rail of
//! `d402-rail-simulated` today); the buyer side is `d402-client`.

pub mod admin;
pub mod catalog;
pub mod config;
pub mod decision;
pub mod engine;
pub mod gateway;
pub mod http;
pub mod installed;
pub mod metrics;
pub mod run;
pub mod safety;
pub mod server;
pub mod settlement;
pub mod validation;
pub mod validator;
pub mod worker;

pub use config::{NodeArgs, NodeConfig, Role};
pub use gateway::Gateway;
pub use http::{router, serve};
pub use installed::find_installed;
