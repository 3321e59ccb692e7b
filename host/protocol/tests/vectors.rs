//! Known-answer vectors: CIDs and signatures that must not change across runs or machines.

use d402_protocol::{
    CapabilityManifest, CapabilityRegistration, ContentId, CreatorCommission, Keypair,
    NamespaceProof, PROOF_TYPE_WALLET, ProtocolError, Signed, Timestamp,
};

const MANIFEST: &str = include_str!("vectors/manifest.json");
/// CID of `vectors/manifest.json` (JCS, sha2-256, CIDv1 raw, base32). Changing the manifest
/// serialisation or the CID scheme breaks every registration in the wild: this must not move.
const MANIFEST_CID: &str = "bafkreib63rfxriqah4f52hg4kprykr4lg4oe5sgm7ngd74djfqoqfo2kci";

fn manifest() -> CapabilityManifest {
    CapabilityManifest::from_json(MANIFEST).unwrap()
}

fn key(byte: u8) -> Keypair {
    Keypair::from_seed(&[byte; 32])
}

fn registration(publisher: &Keypair) -> CapabilityRegistration {
    CapabilityRegistration::for_manifest(
        &manifest(),
        publisher.public(),
        Timestamp::from_unix_millis(1_790_000_000_000),
    )
    .unwrap()
}

const CAP: u32 = 2000;
fn now() -> Timestamp {
    Timestamp::from_unix_millis(1_790_000_100_000)
}

#[test]
fn fixed_manifest_has_a_fixed_cid() {
    assert_eq!(manifest().cid().unwrap().to_string(), MANIFEST_CID);
}

#[test]
fn formatting_does_not_change_the_cid_but_content_does() {
    let reformatted: serde_json::Value = serde_json::from_str(MANIFEST).unwrap();
    let compact = serde_json::to_string(&reformatted).unwrap();
    assert_eq!(
        CapabilityManifest::from_json(&compact)
            .unwrap()
            .cid()
            .unwrap()
            .to_string(),
        MANIFEST_CID
    );

    // One byte: "$0.001" -> "$0.002".
    let changed = MANIFEST.replacen("$0.001", "$0.002", 1);
    assert_eq!(changed.len(), MANIFEST.len());
    let other = CapabilityManifest::from_json(&changed)
        .unwrap()
        .cid()
        .unwrap();
    assert_ne!(other.to_string(), MANIFEST_CID);
}

#[test]
fn sha256_form_of_the_manifest_cid_parses_to_the_same_cid() {
    let cid: ContentId = MANIFEST_CID.parse().unwrap();
    assert_eq!(cid.to_sha256_string().parse::<ContentId>().unwrap(), cid);
}

#[test]
fn deterministic_signature_vector() {
    // ed25519 signatures are deterministic: a fixed key and payload give a fixed envelope CID.
    let envelope = Signed::sign(registration(&key(1)), &key(1)).unwrap();
    let again = Signed::sign(registration(&key(1)), &key(1)).unwrap();
    assert_eq!(envelope, again);
    assert_eq!(envelope.cid().unwrap(), again.cid().unwrap());
    envelope
        .verify_registration(Some(&manifest()), CAP, now())
        .unwrap();
}

#[test]
fn registration_signed_by_a_does_not_verify_under_b() {
    let envelope = Signed::sign(registration(&key(1)), &key(1)).unwrap();
    let mut forged = envelope.clone();
    forged.signer = key(2).public();
    assert!(forged.verify_registration(None, CAP, now()).is_err());
    // B re-signing A's registration is caught too: the publisher field names A.
    let resigned = Signed::sign(registration(&key(1)), &key(2)).unwrap();
    let err = resigned.verify_registration(None, CAP, now()).unwrap_err();
    assert!(err.to_string().contains("publisher"), "{err}");
}

#[test]
fn any_field_change_breaks_the_signature() {
    let envelope = Signed::sign(registration(&key(1)), &key(1)).unwrap();
    let value = serde_json::to_value(&envelope).unwrap();
    let payload = value["payload"].as_object().unwrap().clone();
    let mutations: Vec<(&str, serde_json::Value)> = vec![
        ("namespace", "other".into()),
        ("capabilityId", "example.extract_product@2".into()),
        ("version", "2".into()),
        ("manifestCid", ContentId::of_bytes(b"x").to_string().into()),
        ("tags", serde_json::json!(["x"])),
        ("deprecated", true.into()),
        ("determinism", "nondeterministic".into()),
        ("createdAt", "2026-01-01T00:00:00.000Z".into()),
    ];
    for (field, new_value) in mutations {
        assert!(
            payload.contains_key(field),
            "{field} missing from the vector"
        );
        let mut tampered = value.clone();
        tampered["payload"][field] = new_value;
        let tampered: Signed<CapabilityRegistration> = serde_json::from_value(tampered).unwrap();
        assert!(
            tampered.verify().is_err(),
            "changing {field} kept the signature valid"
        );
    }
}

#[test]
fn a_registration_signature_does_not_verify_as_a_namespace_proof() {
    let envelope = Signed::sign(registration(&key(1)), &key(1)).unwrap();
    let message =
        d402_protocol::signing_message("capability-registration", &envelope.payload).unwrap();
    key(1)
        .public()
        .verify(&message, &envelope.signature)
        .unwrap();
    let as_proof = d402_protocol::signing_message("namespace-proof", &envelope.payload).unwrap();
    assert!(
        key(1)
            .public()
            .verify(&as_proof, &envelope.signature)
            .is_err()
    );
}

#[test]
fn registration_must_match_the_manifest() {
    let mut other = manifest();
    other.description = "something else".into();
    let envelope = Signed::sign(registration(&key(1)), &key(1)).unwrap();
    let err = envelope
        .verify_registration(Some(&other), CAP, now())
        .unwrap_err();
    assert!(err.to_string().contains("manifestCid"), "{err}");
}

#[test]
fn commission_above_the_cap_is_refused() {
    let mut reg = registration(&key(1));
    reg.creator_commission = Some(CreatorCommission::new(
        2001,
        key(3).public().to_string(),
        "solana".into(),
    ));
    let envelope = Signed::sign(reg.clone(), &key(1)).unwrap();
    let err = envelope.verify_registration(None, CAP, now()).unwrap_err();
    assert!(
        err.to_string().contains("creatorCommission.rateBps"),
        "{err}"
    );
    // The cap is the gateway's: a lower configured cap refuses a lower rate.
    reg.creator_commission = Some(CreatorCommission::new(
        1000,
        key(3).public().to_string(),
        "solana".into(),
    ));
    let envelope = Signed::sign(reg, &key(1)).unwrap();
    assert!(envelope.verify_registration(None, CAP, now()).is_ok());
    assert!(envelope.verify_registration(None, 500, now()).is_err());
}

fn proof(
    owner: &Keypair,
    delegate: &Keypair,
    expires_at: Option<Timestamp>,
) -> Signed<NamespaceProof> {
    Signed::sign(
        NamespaceProof {
            namespace: "example".into(),
            proof_type: PROOF_TYPE_WALLET.into(),
            delegate: delegate.public(),
            issued_at: Timestamp::from_unix_millis(1_789_000_000_000),
            expires_at,
        },
        owner,
    )
    .unwrap()
}

#[test]
fn namespace_proofs_bind_owner_to_publisher() {
    let (owner, publisher, stranger) = (key(7), key(1), key(8));
    let mut reg = registration(&publisher);
    reg.namespace_proof = Some(proof(&owner, &publisher, None));
    let ok = Signed::sign(reg.clone(), &publisher).unwrap();
    ok.verify_registration(Some(&manifest()), CAP, now())
        .unwrap();

    reg.namespace_proof = Some(proof(&owner, &stranger, None));
    let wrong_delegate = Signed::sign(reg.clone(), &publisher).unwrap();
    assert!(
        wrong_delegate
            .verify_registration(None, CAP, now())
            .is_err()
    );

    reg.namespace_proof = Some(proof(
        &owner,
        &publisher,
        Some(Timestamp::from_unix_millis(1_790_000_000_001)),
    ));
    let expired = Signed::sign(reg.clone(), &publisher).unwrap();
    let err = expired.verify_registration(None, CAP, now()).unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");

    let mut forged = proof(&owner, &publisher, None);
    forged.payload.namespace = "web".into();
    reg.namespace_proof = Some(forged);
    assert!(
        Signed::sign(reg, &publisher)
            .unwrap()
            .verify_registration(None, CAP, now())
            .is_err()
    );
}

#[test]
fn input_and_output_are_checked_against_the_schemas() {
    let schemas = manifest().compile_schemas().unwrap();
    schemas
        .validate_input(&serde_json::json!({"text": "hi"}))
        .unwrap();
    let err = schemas
        .validate_input(&serde_json::json!({"text": 5}))
        .unwrap_err();
    assert!(err.to_string().contains("input.text"), "{err}");
    assert!(
        schemas
            .validate_input(&serde_json::json!({"text": "a", "extra": 1}))
            .is_err()
    );
    assert!(schemas.validate_output(&serde_json::json!({})).is_err());
}

#[test]
fn defects_name_the_field() {
    let cases = [
        (
            r#""deadlineMs": 5000"#,
            r#""deadlineMs": 0"#,
            "limits.deadlineMs",
        ),
        (
            r#""id": "example.extract_product""#,
            r#""id": "Example""#,
            "id",
        ),
        (r#""version": "1""#, r#""version": "01""#, "version"),
        (r#""type": "object""#, r#""type": "nope""#, "inputSchema"),
        (
            r#""world": "d402:capability/pure@0.1.0""#,
            r#""world": "x""#,
            "runtime.world",
        ),
    ];
    for (from, to, field) in cases {
        assert!(MANIFEST.contains(from), "fixture lacks {from}");
        let err = CapabilityManifest::from_json(&MANIFEST.replacen(from, to, 1)).unwrap_err();
        assert!(
            matches!(&err, ProtocolError::Invalid(d) if d.iter().any(|d| d.field.starts_with(field))),
            "{to}: {err}"
        );
    }
    let unknown = MANIFEST.replacen("{", r#"{"bogus": 1,"#, 1);
    let err = CapabilityManifest::from_json(&unknown).unwrap_err();
    assert!(err.to_string().contains("unknown field `bogus`"), "{err}");
}
