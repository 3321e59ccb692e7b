//! A d402 node's state on disk: the layout of its state directory ([`StateDir`]) and the
//! durable store in `<state>/node.redb` ([`NodeStore`]).

mod layout;
mod payouts;
mod store;

pub use layout::StateDir;
pub use payouts::{OwedPayout, PayoutState};
pub use store::{
    Accepted, NodeStore, PaymentClaim, Receipts, StoreError, TaskFilter, TaskRecord, TaskStatus,
};
