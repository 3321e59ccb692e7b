//! Payouts a provider owes on a rail where the whole price lands at its own `payTo` (x402
//! on Base): one entry per payout of a settled task's receipt, and where paying it stands.
//! A transfer is recorded signed (hash and raw bytes) before it is sent, so a crash never
//! leads to a second, different transfer for the same payout.

use d402_payment::RailId;
use d402_protocol::{Amount, PayoutReason};
use serde::{Deserialize, Serialize};

/// One payout of a settled task, owed on its rail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OwedPayout {
    /// The task whose settlement receipt lists it.
    pub task_id: String,
    /// Its position among the receipt's payouts.
    pub index: u32,
    /// The rail the price was paid on.
    pub rail: RailId,
    /// The rail's network.
    pub network: String,
    /// Why it is owed.
    pub reason: PayoutReason,
    /// The payee as the receipt names it.
    pub account: String,
    /// Where it is paid on the rail (an EVM address), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// How much.
    pub amount: Amount,
    /// Where paying it stands.
    pub state: PayoutState,
}

impl OwedPayout {
    /// The store key: `<task id>/<index>`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.task_id, self.index)
    }
}

/// Where paying an owed payout stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "status")]
pub enum PayoutState {
    /// The provider keeps it: its own worker or validator, with no separate payout address.
    Kept,
    /// It cannot be paid on this rail: no payout address is known for the payee.
    Unpayable {
        /// Why.
        reason: String,
    },
    /// Owed and not yet sent.
    Owed,
    /// A signed transfer, recorded before it was sent: a later run finds it on chain or
    /// sends exactly these bytes again.
    Sending {
        /// The transaction hash.
        transaction: String,
        /// The signed transaction, 0x hex.
        raw: String,
    },
    /// Paid.
    Paid {
        /// The transaction hash.
        transaction: String,
    },
}

impl PayoutState {
    /// The state's name, as `d402 payouts list` shows it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Kept => "kept",
            Self::Unpayable { .. } => "unpayable",
            Self::Owed => "owed",
            Self::Sending { .. } => "sending",
            Self::Paid { .. } => "paid",
        }
    }
}
