//! Capability registrations, creator commission terms and namespace proofs.

use serde::{Deserialize, Serialize};

use crate::content_id::{ContentHash, ContentId};
use crate::error::{Defects, ProtocolError};
use crate::keys::PublicKey;
use crate::manifest::{
    CapabilityManifest, DeterminismClass, ValidationModel, check_capability_name,
};
use crate::signed::{Signed, SignedObject};
use crate::time::Timestamp;

/// Schema name of creator commission terms.
pub const CREATOR_COMMISSION_SCHEMA: &str = "d402.creator_commission@1";
/// Default gateway cap on creator commissions, in basis points (20%).
pub const DEFAULT_MAX_CREATOR_COMMISSION_BPS: u32 = 2000;

/// A publisher's signed statement that a manifest CID belongs to a namespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CapabilityRegistration {
    /// The namespace the capability is published under (the id's first segment).
    pub namespace: String,
    /// `<id>@<major>`, e.g. `web.page_to_markdown@1`.
    pub capability_id: String,
    /// The manifest's version string.
    pub version: String,
    /// CID of the exact manifest.
    pub manifest_cid: ContentId,
    /// Hash of the manifest's input and output schemas.
    pub schema_hash: ContentHash,
    /// Search tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The manifest's determinism class, for indexing.
    pub determinism: DeterminismClass,
    /// The manifest's validation model, for indexing.
    pub validator_model: ValidationModel,
    /// True once the publisher deprecates this version.
    #[serde(default)]
    pub deprecated: bool,
    /// The publisher's wallet: the key that signs this registration.
    pub publisher: PublicKey,
    /// Commission the publisher earns on accepted tasks, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator_commission: Option<CreatorCommission>,
    /// Proof that the namespace's owner lets the publisher publish under it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_proof: Option<Signed<NamespaceProof>>,
    /// When the registration was made.
    pub created_at: Timestamp,
}

impl SignedObject for CapabilityRegistration {
    const OBJECT_TYPE: &'static str = "capability-registration";
}

/// `d402.creator_commission@1`: the share of each accepted task's price paid to the creator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreatorCommission {
    /// Always [`CREATOR_COMMISSION_SCHEMA`].
    pub schema: String,
    /// Share of the all-in price, in basis points.
    pub rate_bps: u32,
    /// The creator's payout account (base58 Solana address or 0x EVM address).
    pub wallet: String,
    /// Rail the commission is paid on, e.g. `solana`.
    pub payout_rail: String,
    /// Always `exact-manifest`: the terms apply to this manifest CID only.
    pub scope: String,
}

/// The only commission scope: the exact manifest CID of the registration.
pub const COMMISSION_SCOPE_EXACT_MANIFEST: &str = "exact-manifest";

impl CreatorCommission {
    /// Commission terms at `rate_bps` paid to `wallet` on `payout_rail`.
    pub fn new(rate_bps: u32, wallet: String, payout_rail: String) -> Self {
        Self {
            schema: CREATOR_COMMISSION_SCHEMA.to_string(),
            rate_bps,
            wallet,
            payout_rail,
            scope: COMMISSION_SCOPE_EXACT_MANIFEST.to_string(),
        }
    }

    fn check(&self, max_bps: u32, defects: &mut Defects) {
        defects.check(
            self.schema == CREATOR_COMMISSION_SCHEMA,
            "creatorCommission.schema",
            format!("must be {CREATOR_COMMISSION_SCHEMA:?}"),
        );
        defects.check(
            self.rate_bps > 0,
            "creatorCommission.rateBps",
            "must be positive",
        );
        defects.check(
            self.rate_bps <= max_bps,
            "creatorCommission.rateBps",
            format!("{} bps is above the cap of {max_bps} bps", self.rate_bps),
        );
        defects.check(
            is_payout_account(&self.wallet),
            "creatorCommission.wallet",
            format!(
                "{:?} is neither a base58 ed25519 address nor a 0x EVM address",
                self.wallet
            ),
        );
        defects.check(
            matches!(self.payout_rail.as_str(), "solana" | "base" | "simulated"),
            "creatorCommission.payoutRail",
            "must be solana, base or simulated",
        );
        defects.check(
            self.scope == COMMISSION_SCOPE_EXACT_MANIFEST,
            "creatorCommission.scope",
            format!("must be {COMMISSION_SCOPE_EXACT_MANIFEST:?}"),
        );
    }
}

/// True for a base58 ed25519 address or a 0x-prefixed 20-byte EVM address.
pub fn is_payout_account(account: &str) -> bool {
    if let Some(hex_part) = account.strip_prefix("0x") {
        return hex_part.len() == 40 && hex_part.bytes().all(|b| b.is_ascii_hexdigit());
    }
    account.parse::<PublicKey>().is_ok()
}

/// A namespace owner's signed permission for a publisher key to publish under the namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamespaceProof {
    /// The namespace, e.g. `example`.
    pub namespace: String,
    /// How ownership is anchored. Only `wallet` (the signing key owns the namespace) is
    /// verifiable offline; gateways pin trusted owners by policy.
    pub proof_type: String,
    /// The key allowed to publish under the namespace.
    pub delegate: PublicKey,
    /// When the proof was issued.
    pub issued_at: Timestamp,
    /// When it stops being valid, if ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
}

impl SignedObject for NamespaceProof {
    const OBJECT_TYPE: &'static str = "namespace-proof";
}

/// The proof type whose anchor is the signing wallet itself.
pub const PROOF_TYPE_WALLET: &str = "wallet";

impl Signed<CapabilityRegistration> {
    /// Verifies the envelope and every rule a registration must satisfy.
    ///
    /// With `manifest`, also checks that the registration names exactly that manifest.
    /// `now` decides namespace proof expiry.
    pub fn verify_registration(
        &self,
        manifest: Option<&CapabilityManifest>,
        max_commission_bps: u32,
        now: Timestamp,
    ) -> Result<&CapabilityRegistration, ProtocolError> {
        let registration = self.verify()?;
        let mut defects = Defects::default();
        defects.check(
            registration.publisher == self.signer,
            "publisher",
            format!(
                "{} did not sign this registration ({} did)",
                registration.publisher, self.signer
            ),
        );
        if let Err(reason) = check_capability_name(
            registration
                .capability_id
                .split('@')
                .next()
                .unwrap_or_default(),
        ) {
            defects.push("capabilityId", reason);
        }
        defects.check(
            registration
                .capability_id
                .starts_with(&format!("{}.", registration.namespace)),
            "capabilityId",
            format!(
                "{:?} is not in namespace {:?}",
                registration.capability_id, registration.namespace
            ),
        );
        if let Some(commission) = &registration.creator_commission {
            commission.check(max_commission_bps, &mut defects);
        }
        if let Some(proof) = &registration.namespace_proof {
            check_namespace_proof(proof, registration, now, &mut defects);
        }
        if let Some(manifest) = manifest {
            check_matches_manifest(registration, manifest, &mut defects)?;
        }
        defects.into_result()?;
        Ok(registration)
    }
}

fn check_namespace_proof(
    proof: &Signed<NamespaceProof>,
    registration: &CapabilityRegistration,
    now: Timestamp,
    defects: &mut Defects,
) {
    let Ok(claim) = proof.verify() else {
        defects.push("namespaceProof", "signature does not verify");
        return;
    };
    defects.check(
        claim.namespace == registration.namespace,
        "namespaceProof.namespace",
        format!(
            "proves {:?}, not {:?}",
            claim.namespace, registration.namespace
        ),
    );
    defects.check(
        claim.delegate == registration.publisher,
        "namespaceProof.delegate",
        format!(
            "delegates to {}, not the publisher {}",
            claim.delegate, registration.publisher
        ),
    );
    defects.check(
        claim.proof_type == PROOF_TYPE_WALLET,
        "namespaceProof.proofType",
        format!(
            "{:?} cannot be verified offline; only \"wallet\" is supported",
            claim.proof_type
        ),
    );
    if let Some(expires_at) = claim.expires_at {
        defects.check(
            now < expires_at,
            "namespaceProof.expiresAt",
            format!("expired at {expires_at}"),
        );
    }
}

fn check_matches_manifest(
    registration: &CapabilityRegistration,
    manifest: &CapabilityManifest,
    defects: &mut Defects,
) -> Result<(), ProtocolError> {
    let cid = manifest.cid()?;
    defects.check(
        registration.manifest_cid == cid,
        "manifestCid",
        format!(
            "{} does not match the manifest's CID {cid}",
            registration.manifest_cid
        ),
    );
    defects.check(
        registration.capability_id == manifest.capability_id(),
        "capabilityId",
        format!("manifest is {}", manifest.capability_id()),
    );
    defects.check(
        registration.version == manifest.version,
        "version",
        format!("manifest has version {:?}", manifest.version),
    );
    defects.check(
        registration.schema_hash == manifest.schema_hash()?,
        "schemaHash",
        "does not match the manifest's schemas",
    );
    Ok(())
}

impl CapabilityRegistration {
    /// A registration of `manifest` by `publisher` under the manifest's namespace.
    pub fn for_manifest(
        manifest: &CapabilityManifest,
        publisher: PublicKey,
        created_at: Timestamp,
    ) -> Result<Self, ProtocolError> {
        Ok(Self {
            namespace: manifest.namespace().to_string(),
            capability_id: manifest.capability_id(),
            version: manifest.version.clone(),
            manifest_cid: manifest.cid()?,
            schema_hash: manifest.schema_hash()?,
            tags: manifest.tags.clone(),
            determinism: manifest.determinism,
            validator_model: manifest.validator.model,
            deprecated: false,
            publisher,
            creator_commission: None,
            namespace_proof: None,
            created_at,
        })
    }
}
