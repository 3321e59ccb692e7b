//! Gateway keys pinned on first use, as SSH's `known_hosts`: a gateway whose key changed is
//! refused unless the buyer says to accept the new key.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use d402_protocol::PublicKey;

/// The pinned keys, by gateway URL.
pub struct KnownGateways {
    path: PathBuf,
    keys: BTreeMap<String, String>,
}

/// What checking a gateway's key found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pin {
    /// The key pinned before.
    Known,
    /// First use: pinned now.
    New,
    /// A different key, accepted because the buyer said so.
    Replaced,
}

impl KnownGateways {
    /// Reads the pins at `path` (none yet when it does not exist).
    pub fn load(path: PathBuf) -> anyhow::Result<Self> {
        let keys = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not a known-gateways file", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        Ok(Self { path, keys })
    }

    /// The key pinned for `gateway`.
    pub fn key(&self, gateway: &str) -> Option<PublicKey> {
        self.keys.get(gateway).and_then(|k| k.parse().ok())
    }

    /// Checks `key` for `gateway`, pinning it on first use (or replacing it when `accept_new`);
    /// a changed key is an error saying what to do.
    pub fn check(
        &mut self,
        gateway: &str,
        key: &PublicKey,
        accept_new: bool,
    ) -> anyhow::Result<Pin> {
        let key = key.to_string();
        let pin = match self.keys.get(gateway) {
            Some(pinned) if *pinned == key => return Ok(Pin::Known),
            Some(pinned) if !accept_new => anyhow::bail!(
                "the gateway {gateway} now signs with {key}, not the key pinned on first use ({pinned}); \
                 if the operator rotated it, run `d402-agent discover --accept-new-key`"
            ),
            Some(_) => Pin::Replaced,
            None => Pin::New,
        };
        self.keys.insert(gateway.to_string(), key);
        let text = serde_json::to_vec_pretty(&self.keys).expect("keys serialize");
        d402_wallet::write_private(&self.path, &text)
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        Ok(pin)
    }
}
