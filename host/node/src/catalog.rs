//! The capabilities a gateway serves: every capability installed in the node's state that
//! passes the gateway's acceptance policy, with its price, validator, registration and hash
//! shard, and the search behind `GET /capabilities`.
//!
//! Acceptance policy (DESIGN "gateway policy"): accepted manifest CIDs, trusted namespaces,
//! a required registration for the exact manifest CID (registrations are signed envelopes,
//! so requiring one also requires its signature), a required namespace proof, no deprecated
//! registration, and a price within `D402_SAFETY_MAX_TASK_BUDGET`. A capability that fails
//! the policy is not served; the reason is logged.

use std::path::Path;
use std::sync::Arc;

use anyhow::bail;
use d402_blobstore::BlobStore;
use d402_protocol::{Amount, CapabilityRegistration, ContentId, Signed, Timestamp, parse_json};
use d402_runtime::{LoadedCapability, Runtime};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::NodeConfig;
use crate::installed::Installed;
use crate::settlement::CommissionTerms;
use crate::validation::Validator;
use d402_store::StateDir;

/// A registration the gateway accepted for a served manifest.
#[derive(Debug, Clone)]
pub struct Registered {
    /// CID of the signed registration envelope.
    pub cid: ContentId,
    /// Its verified payload.
    pub registration: CapabilityRegistration,
}

/// One capability the gateway serves.
pub struct ServedCapability {
    /// The loaded component and its manifest.
    pub loaded: Arc<LoadedCapability>,
    /// `<id>@<major>`.
    pub capability_id: String,
    /// The exact manifest served.
    pub manifest_cid: ContentId,
    /// The all-in price of one task.
    pub price: Amount,
    /// The accepted registration for this exact manifest CID, if any.
    pub registration: Option<Registered>,
    /// The validator the manifest asks for.
    pub validator: Validator,
    /// The hash shard ([`shard_of`]).
    pub shard: String,
}

impl ServedCapability {
    /// Whether the accepted signed registration declares a creator commission above zero
    /// (read without building the terms: admission asks on every paid request).
    pub fn has_commission(&self) -> bool {
        self.registration
            .as_ref()
            .and_then(|r| r.registration.creator_commission.as_ref())
            .is_some_and(|terms| terms.rate_bps > 0)
    }

    /// Creator commission terms, from the accepted signed registration (the cap was
    /// enforced when it was accepted).
    pub fn commission(&self) -> Option<CommissionTerms> {
        let registered = self.registration.as_ref()?;
        let terms = registered.registration.creator_commission.as_ref()?;
        Some(CommissionTerms {
            rate_bps: terms.rate_bps,
            wallet: terms.wallet.clone(),
            manifest_cid: self.manifest_cid,
            registration_cid: registered.cid,
            publisher: registered.registration.publisher.to_string(),
            namespace: registered.registration.namespace.clone(),
        })
    }
}

/// The hash shard of a capability: the first two hex digits of sha256 of its ID (256 shards).
pub fn shard_of(capability_id: &str) -> String {
    hex::encode(&Sha256::digest(capability_id.as_bytes())[..1])
}

/// `GET /capabilities` query parameters; every given one must match.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CapabilityQuery {
    /// Case-insensitive words matched against ID, description and tags.
    pub q: Option<String>,
    /// Exact namespace.
    pub namespace: Option<String>,
    /// One of the tags.
    pub tag: Option<String>,
    /// Hash shard (two hex digits).
    pub shard: Option<String>,
    /// Exact capability ID (`web.page_to_markdown@1`).
    pub capability_id: Option<String>,
    /// Exact manifest CID (CIDv1 or `sha256:<hex>`).
    pub manifest_cid: Option<String>,
}

/// The served capabilities; the first is the default for requests that name none.
pub struct Catalog {
    entries: Vec<Arc<ServedCapability>>,
}

impl Catalog {
    /// Loads every `installed` capability (of `config.state`) that passes the policy. Fails when
    /// none does. The capability named by `config.capability` (or the first accepted
    /// manifest CID) becomes the default when it is served.
    pub fn load(
        config: &NodeConfig,
        runtime: &Runtime,
        installed: Vec<Installed>,
    ) -> anyhow::Result<Self> {
        let blobs = BlobStore::open(StateDir::new(&config.node.state).blobs())?;
        let envelopes = read_registrations(&config.node.state)?;
        let now = Timestamp::now();
        let mut entries = Vec::new();
        for installed in installed {
            let manifest = installed.manifest;
            let cid = installed.package.manifest_cid;
            let registration = envelopes
                .iter()
                .filter(|(_, envelope)| envelope.payload.manifest_cid == cid)
                .find_map(|(path, envelope)| {
                    match envelope.verify_registration(
                        Some(&manifest),
                        config.capabilities.max_creator_commission_bps,
                        now,
                    ) {
                        Ok(registration) => Some(Registered {
                            cid: envelope.cid().ok()?,
                            registration: registration.clone(),
                        }),
                        Err(e) => {
                            tracing::warn!(file = %path.display(), "ignoring registration: {e:#}");
                            None
                        }
                    }
                });
            let price = config
                .capabilities
                .price
                .map_or(manifest.pricing.price.0, |p| p.0);
            if let Err(reason) = admit(config, &manifest, &cid, registration.as_ref(), price) {
                tracing::warn!(capability = %manifest.capability_id(), manifest = %cid, "not served: {reason}");
                continue;
            }
            let loaded = match runtime.load_from_store(
                &manifest,
                installed.package.artifact_cid,
                &blobs,
            ) {
                Ok(loaded) => loaded,
                Err(e) => {
                    tracing::error!(capability = %manifest.capability_id(), manifest = %cid, "not served: cannot load: {e}");
                    continue;
                }
            };
            let capability_id = manifest.capability_id();
            entries.push(Arc::new(ServedCapability {
                validator: Validator::for_manifest(&manifest),
                shard: shard_of(&capability_id),
                capability_id,
                manifest_cid: cid,
                price,
                registration,
                loaded,
            }));
        }
        if entries.is_empty() {
            bail!(
                "no installed capability passes this gateway's policy in {} (see the log)",
                config.node.state.display()
            );
        }
        let wanted = config
            .capabilities
            .accepted_manifest_cids
            .first()
            .unwrap_or(&config.node.capability);
        let catalog = Self { entries };
        if let Some(position) = catalog.entries.iter().position(|e| matches(e, wanted)) {
            let mut entries = catalog.entries;
            let default = entries.remove(position);
            entries.insert(0, default);
            return Ok(Self { entries });
        }
        // The embedded default names page-to-markdown; a node serving only other
        // capabilities did not ask for it, so that is no reason to warn.
        if config.capabilities.accepted_manifest_cids.is_empty()
            && config.node.capability == crate::config::DEFAULT_CAPABILITY
        {
            tracing::debug!(default = %catalog.entries[0].capability_id, "serving another default capability");
        } else {
            tracing::warn!(wanted, default = %catalog.entries[0].capability_id, "the configured capability is not served");
        }
        Ok(catalog)
    }

    /// The capability served when a request names none.
    pub fn default_capability(&self) -> &Arc<ServedCapability> {
        &self.entries[0]
    }

    /// All served capabilities, the default first.
    pub fn all(&self) -> &[Arc<ServedCapability>] {
        &self.entries
    }

    /// The served capability with this ID or manifest CID; for an ID, the newest version.
    pub fn get(&self, reference: &str) -> Option<&Arc<ServedCapability>> {
        self.entries.iter().find(|e| matches(e, reference))
    }

    /// The served capabilities matching every given parameter of `query`.
    pub fn search(&self, query: &CapabilityQuery) -> Vec<&Arc<ServedCapability>> {
        let cid = query
            .manifest_cid
            .as_deref()
            .map(|c| c.parse::<ContentId>().ok());
        let words: Vec<String> = query
            .q
            .as_deref()
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_lowercase)
            .collect();
        self.entries
            .iter()
            .filter(|e| {
                let manifest = e.loaded.manifest();
                let text = format!(
                    "{} {} {}",
                    e.capability_id,
                    manifest.description,
                    manifest.tags.join(" ")
                )
                .to_lowercase();
                words.iter().all(|w| text.contains(w.as_str()))
                    && query
                        .namespace
                        .as_deref()
                        .is_none_or(|n| n == manifest.namespace())
                    && query
                        .tag
                        .as_deref()
                        .is_none_or(|t| manifest.tags.iter().any(|x| x == t))
                    && query
                        .shard
                        .as_deref()
                        .is_none_or(|s| s.eq_ignore_ascii_case(&e.shard))
                    && query
                        .capability_id
                        .as_deref()
                        .is_none_or(|id| id == e.capability_id)
                    && cid.is_none_or(|c| c == Some(e.manifest_cid))
            })
            .collect()
    }
}

fn matches(entry: &ServedCapability, reference: &str) -> bool {
    match reference.parse::<ContentId>() {
        Ok(cid) => entry.manifest_cid == cid,
        Err(_) => entry.capability_id == reference,
    }
}

/// Why `manifest` may not be served under `config`'s policy, if it may not.
fn admit(
    config: &NodeConfig,
    manifest: &d402_protocol::CapabilityManifest,
    cid: &ContentId,
    registration: Option<&Registered>,
    price: Amount,
) -> Result<(), String> {
    let accepted: Vec<ContentId> = config
        .capabilities
        .accepted_manifest_cids
        .iter()
        .filter_map(|c| c.parse().ok())
        .collect();
    if !config.capabilities.accepted_manifest_cids.is_empty() && !accepted.contains(cid) {
        return Err("its manifest CID is not an --accepted-manifest-cid".into());
    }
    let namespaces = &config.capabilities.trusted_namespaces;
    if !namespaces.is_empty() && !namespaces.iter().any(|n| n == manifest.namespace()) {
        return Err(format!(
            "namespace {:?} is not a --trusted-capability-namespace",
            manifest.namespace()
        ));
    }
    let needs_registration =
        config.capabilities.require_registration || config.capabilities.require_signed_registration;
    if needs_registration && registration.is_none() {
        return Err("no valid signed registration for this exact manifest CID".into());
    }
    if config.capabilities.require_namespace_proof
        && registration.is_none_or(|r| r.registration.namespace_proof.is_none())
    {
        return Err("its registration carries no valid namespace proof".into());
    }
    if registration.is_some_and(|r| r.registration.deprecated) {
        return Err("its registration is deprecated".into());
    }
    if let Some(d402_protocol::Price(cap)) = config.safety.max_task_budget
        && price > cap
    {
        return Err(format!(
            "price {} is above D402_SAFETY_MAX_TASK_BUDGET {}",
            d402_protocol::Price(price),
            d402_protocol::Price(cap)
        ));
    }
    Ok(())
}

/// Reads the registration envelopes in `<state>/registrations/*.json`; unreadable files are
/// logged and skipped. Verification happens against the manifest they name.
pub(crate) fn read_registrations(
    state: &Path,
) -> anyhow::Result<Vec<(std::path::PathBuf, Signed<CapabilityRegistration>)>> {
    let Ok(entries) = std::fs::read_dir(StateDir::new(state).registrations()) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let parsed = std::fs::read_to_string(&path)
            .map_err(anyhow::Error::from)
            .and_then(|text| Ok(parse_json::<Signed<CapabilityRegistration>>(&text)?));
        match parsed {
            Ok(envelope) => out.push((path, envelope)),
            Err(e) => tracing::warn!(file = %path.display(), "ignoring registration: {e:#}"),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_two_hex_digits_of_the_id_hash() {
        let shard = shard_of("web.page_to_markdown@1");
        assert_eq!(shard.len(), 2);
        assert_eq!(
            shard,
            hex::encode(&Sha256::digest(b"web.page_to_markdown@1")[..1])
        );
        assert_ne!(shard_of("a.b@1"), shard_of("a.b@2"));
    }
}
