//! The agent's ledger: an append-only JSON-lines file (0600) of reservations, payments
//! and their outcomes, written under an exclusive file lock. Spend is reserved before a
//! payment is signed (two concurrent requests cannot both pass a cap), and the payment is
//! written before it is sent, so a retry after a crash or a dropped connection re-sends
//! exactly the same payment.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::policy::{Policy, PolicyError, Quote, Spent};

/// How long the day caps look back, milliseconds.
const DAY_MS: u64 = 24 * 3600 * 1000;

/// One line of the ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "event",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
pub enum Entry {
    /// Spend reserved for a payment about to be signed.
    Reserved {
        /// The request's id in the ledger.
        id: String,
        /// When, Unix ms.
        at_ms: u64,
        /// The gateway.
        gateway: String,
        /// Atomic units.
        amount: u64,
        /// The requirement's network.
        network: String,
        /// The requirement's asset.
        asset: String,
        /// The requirement's `payTo`.
        pay_to: String,
    },
    /// The signed payment, recorded before it is sent.
    Paid {
        /// The request's id.
        id: String,
        /// When, Unix ms.
        at_ms: u64,
        /// The request body it pays for.
        body: Value,
        /// `sha256:` binding of the body.
        binding: String,
        /// The x402 `payment-identifier` sent with it (the gateway's idempotency key).
        payment_id: String,
        /// The agent process sending it: while it lives the payment is in flight, not
        /// abandoned.
        #[serde(default)]
        pid: u32,
        /// The payment header's name.
        header: String,
        /// The payment header's value (sent again as is on a retry).
        payment: String,
        /// The signed transfer the agent puts on chain itself before presenting the
        /// payment (base64; Solana direct), recorded before it is sent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        transaction: Option<String>,
    },
    /// What the gateway made of it.
    Settled {
        /// The request's id.
        id: String,
        /// When, Unix ms.
        at_ms: u64,
        /// The task.
        task_id: String,
        /// Its final status.
        status: String,
        /// The gateway key the receipt was checked against.
        gateway_key: String,
        /// The decoded `PAYMENT-RESPONSE`.
        payment_response: Option<Value>,
        /// The receipt document.
        receipt: Value,
        /// The result, when accepted.
        result: Option<Value>,
        /// The run's evidence (content hash, snapshots, artifact), when accepted.
        #[serde(default)]
        evidence: Option<Value>,
    },
    /// The reservation no longer counts: nothing was charged, or it was refunded.
    Released {
        /// The request's id.
        id: String,
        /// When, Unix ms.
        at_ms: u64,
        /// Why.
        reason: String,
    },
}

impl Entry {
    /// The request id the entry belongs to.
    pub fn id(&self) -> &str {
        match self {
            Self::Reserved { id, .. }
            | Self::Paid { id, .. }
            | Self::Settled { id, .. }
            | Self::Released { id, .. } => id,
        }
    }
}

/// The ledger file.
pub struct Ledger {
    path: PathBuf,
}

/// The file, locked exclusively for as long as it is held.
struct Locked(File);

impl Drop for Locked {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

impl Ledger {
    /// The ledger at `path` (created on first write, mode 0600).
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    fn open(&self) -> anyhow::Result<Locked> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.path)
            .with_context(|| format!("cannot open the ledger {}", self.path.display()))?;
        file.lock()
            .with_context(|| format!("cannot lock the ledger {}", self.path.display()))?;
        Ok(Locked(file))
    }

    /// Every entry, oldest first. A torn last line (a crash mid-write) is ignored.
    pub fn entries(&self) -> anyhow::Result<Vec<Entry>> {
        if !self.path.exists() {
            return Ok(Vec::new());
        }
        let locked = self.open()?;
        read_entries(&locked.0, &self.path)
    }

    /// Appends `entry`, durably.
    pub fn append(&self, entry: &Entry) -> anyhow::Result<()> {
        let mut locked = self.open()?;
        write_entry(&mut locked.0, entry)
    }

    /// Checks `quote` against `policy` and what the ledger says was spent, and reserves it
    /// under the same lock: concurrent requests cannot both pass a cap.
    pub fn reserve(
        &self,
        policy: &Policy,
        id: &str,
        quote: &Quote<'_>,
        now_ms: u64,
    ) -> anyhow::Result<Result<(), PolicyError>> {
        let mut locked = self.open()?;
        let entries = read_entries(&locked.0, &self.path)?;
        let spent = spent(&entries, quote.gateway, now_ms);
        if let Err(refused) = policy.check(quote, spent) {
            return Ok(Err(refused));
        }
        write_entry(
            &mut locked.0,
            &Entry::Reserved {
                id: id.to_string(),
                at_ms: now_ms,
                gateway: quote.gateway.to_string(),
                amount: quote.amount,
                network: quote.network.to_string(),
                asset: quote.asset.to_string(),
                pay_to: quote.pay_to.to_string(),
            },
        )?;
        Ok(Ok(()))
    }

    /// The ledger file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// What the entries say was spent: reservations not released, by window.
pub fn spent(entries: &[Entry], gateway: &str, now_ms: u64) -> Spent {
    let released: std::collections::HashSet<&str> = entries
        .iter()
        .filter(|e| matches!(e, Entry::Released { .. }))
        .map(Entry::id)
        .collect();
    let mut spent = Spent::default();
    for entry in entries {
        if let Entry::Reserved {
            id,
            at_ms,
            gateway: at,
            amount,
            ..
        } = entry
            && !released.contains(id.as_str())
        {
            spent.lifetime = spent.lifetime.saturating_add(*amount);
            if now_ms.saturating_sub(*at_ms) < DAY_MS {
                spent.day = spent.day.saturating_add(*amount);
                if at == gateway {
                    spent.gateway_day = spent.gateway_day.saturating_add(*amount);
                }
            }
        }
    }
    spent
}

fn read_entries(file: &File, path: &Path) -> anyhow::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    let lines: Vec<String> = BufReader::new(file)
        .lines()
        .collect::<Result<_, _>>()
        .with_context(|| format!("cannot read the ledger {}", path.display()))?;
    for (number, line) in lines.iter().enumerate() {
        match serde_json::from_str(line) {
            Ok(entry) => entries.push(entry),
            // A crash while appending leaves the start of a line, never a whole object:
            // skipped (the next append starts on a fresh line).
            Err(_) if !line.trim_end().ends_with('}') => {}
            Err(e) => anyhow::bail!(
                "the ledger {} is corrupt at line {}: {e}",
                path.display(),
                number + 1
            ),
        }
    }
    Ok(entries)
}

fn write_entry(file: &mut File, entry: &Entry) -> anyhow::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut line = Vec::new();
    // After a torn write, start on a fresh line.
    let length = file.metadata().context("cannot read the ledger")?.len();
    let mut last = [0u8; 1];
    if length > 0 && file.read_at(&mut last, length - 1).is_ok() && last[0] != b'\n' {
        line.push(b'\n');
    }
    line.extend(serde_json::to_vec(entry).context("cannot encode a ledger entry")?);
    line.push(b'\n');
    file.write_all(&line)
        .context("cannot append to the ledger")?;
    file.sync_data().context("cannot sync the ledger")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quote(amount: u64) -> Quote<'static> {
        Quote {
            gateway: "http://a",
            amount,
            network: "n",
            asset: "a",
            pay_to: "p",
        }
    }

    #[test]
    fn reservations_count_until_released_and_a_torn_line_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::new(dir.path().join("ledger.jsonl"));
        let policy = Policy {
            max_per_day: Some(250),
            ..Policy::default()
        };
        assert!(
            ledger
                .reserve(&policy, "r1", &quote(100), 1_000)
                .unwrap()
                .is_ok()
        );
        assert!(
            ledger
                .reserve(&policy, "r2", &quote(100), 2_000)
                .unwrap()
                .is_ok()
        );
        assert!(
            ledger
                .reserve(&policy, "r3", &quote(100), 3_000)
                .unwrap()
                .is_err()
        );
        ledger
            .append(&Entry::Released {
                id: "r2".into(),
                at_ms: 4_000,
                reason: "refunded".into(),
            })
            .unwrap();
        assert!(
            ledger
                .reserve(&policy, "r3", &quote(100), 5_000)
                .unwrap()
                .is_ok()
        );
        // A day later the day cap is free again; the lifetime still counts.
        let entries = ledger.entries().unwrap();
        let later = spent(&entries, "http://a", 5_000 + DAY_MS);
        assert_eq!((later.day, later.lifetime), (0, 200));
        // A crash mid-append: the torn line is skipped, earlier and later lines stand.
        let mut file = OpenOptions::new().append(true).open(ledger.path()).unwrap();
        file.write_all(b"{\"event\":\"reserv").unwrap();
        assert_eq!(ledger.entries().unwrap().len(), 4);
        ledger
            .append(&Entry::Released {
                id: "r3".into(),
                at_ms: 6_000,
                reason: "test".into(),
            })
            .unwrap();
        assert_eq!(ledger.entries().unwrap().len(), 5);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(ledger.path()).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }
}
