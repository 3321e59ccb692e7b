//! The simulated rail: the buyer signs a [`SimulatedAuthorization`] with its ed25519 key;
//! the gateway checks it and debits the buyer on its local ledger in the same store
//! transaction that records the task; after acceptance the payees are credited, after a
//! failure the buyer. No chain is involved: for development, tests and benchmarks.

use async_trait::async_trait;
use d402_payment::x402::{PaymentPayload, PaymentRequirements, X402_VERSION};
use d402_payment::{
    Account, Authorization, Completion, Expectation, LedgerChange, PayError, Payer, PaymentError,
    PaymentKey, PaymentRail, Purchase, RailError, RailId, request_binding,
};
use d402_protocol::{Amount, Keypair, Payout, Refund, Signed, SignedObject, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The default simulated network name.
pub const SIMULATED_NETWORK: &str = "d402:simulated";
/// The asset the simulated ledger counts (micro-dollars).
pub const SIMULATED_ASSET: &str = "USD";
/// Grace beyond `maxTimeoutSeconds` allowed for clock differences, in milliseconds.
const CLOCK_MARGIN_MS: u64 = 60_000;

/// The buyer's signed authorization on the simulated rail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SimulatedAuthorization {
    /// Network, e.g. `d402:simulated`.
    pub network: String,
    /// Atomic units authorised, decimal string.
    pub amount: String,
    /// Receiving account.
    pub pay_to: String,
    /// Unique per payment (16 to 128 hex digits). Consumed exactly once.
    pub nonce: String,
    /// After this the authorization is void.
    pub expires_at: Timestamp,
    /// `sha256:<hex>` of the canonical request body paid for ([`request_binding`]).
    pub task_binding: String,
}

impl SignedObject for SimulatedAuthorization {
    const OBJECT_TYPE: &'static str = "simulated-payment-authorization";
}

/// The `PAYMENT-SIGNATURE` document of the simulated rail.
pub type SimulatedPayment = PaymentPayload<Signed<SimulatedAuthorization>>;

/// The simulated rail of one gateway: its network name and receiving account.
#[derive(Debug, Clone)]
pub struct SimulatedRail {
    network: String,
    pay_to: Account,
}

impl SimulatedRail {
    /// The rail on `network` (normally [`SIMULATED_NETWORK`]) paying `pay_to`.
    pub fn new(network: impl Into<String>, pay_to: Account) -> Self {
        Self {
            network: network.into(),
            pay_to,
        }
    }

    /// Reads the signed authorization in `payment` (network and nonce checked, signature
    /// not yet).
    fn read(
        &self,
        payment: &PaymentPayload,
    ) -> Result<Signed<SimulatedAuthorization>, PaymentError> {
        if payment.accepted.network != self.network {
            return Err(PaymentError::UnsupportedNetwork(
                payment.accepted.network.clone(),
            ));
        }
        let envelope: Signed<SimulatedAuthorization> = payment
            .typed()
            .map_err(|e| PaymentError::Malformed(e.to_string()))?;
        let auth = &envelope.payload;
        if auth.network != self.network {
            return Err(PaymentError::UnsupportedNetwork(auth.network.clone()));
        }
        if auth.nonce.len() < 16
            || auth.nonce.len() > 128
            || !auth.nonce.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(PaymentError::Malformed(
                "nonce must be 16 to 128 hex digits".into(),
            ));
        }
        Ok(envelope)
    }
}

/// The once-only key of a simulated payment: `<network>:<payer>:<nonce>`.
fn key_of(payer: &Account, auth: &SimulatedAuthorization) -> PaymentKey {
    PaymentKey(format!(
        "{}:{payer}:{}",
        auth.network,
        auth.nonce.to_ascii_lowercase()
    ))
}

/// The once-only key of a signed simulated payment (its signature checked), from which its
/// task id follows ([`PaymentKey::task_id`]).
pub fn payment_key(payment: &SimulatedPayment) -> Result<PaymentKey, PaymentError> {
    let auth = payment
        .payload
        .verify()
        .map_err(|e| PaymentError::BadSignature(e.to_string()))?;
    Ok(key_of(&Account::from(payment.payload.signer), auth))
}

#[async_trait]
impl PaymentRail for SimulatedRail {
    fn id(&self) -> RailId {
        RailId::Simulated
    }

    fn scheme(&self) -> &str {
        "exact"
    }

    fn network(&self) -> &str {
        &self.network
    }

    fn asset(&self) -> &str {
        SIMULATED_ASSET
    }

    fn pay_to(&self) -> &Account {
        &self.pay_to
    }

    fn requirements(&self, price: Amount, max_timeout_seconds: u64) -> PaymentRequirements {
        PaymentRequirements {
            scheme: self.scheme().into(),
            network: self.network.clone(),
            amount: price.micros().to_string(),
            asset: SIMULATED_ASSET.into(),
            pay_to: self.pay_to.to_string(),
            max_timeout_seconds,
            extra: serde_json::json!({
                "authorization": SimulatedAuthorization::OBJECT_TYPE,
                "decimals": 6,
                "taskBinding": "sha256 of the RFC 8785 form of the JSON request body"
            }),
        }
    }

    fn identify(&self, payment: &PaymentPayload) -> Result<PaymentKey, PaymentError> {
        let envelope = self.read(payment)?;
        Ok(key_of(&Account::from(envelope.signer), &envelope.payload))
    }

    async fn authorize(
        &self,
        payment: &PaymentPayload,
        expected: &Expectation<'_>,
    ) -> Result<Authorization, PaymentError> {
        let envelope = self.read(payment)?;
        let auth = envelope
            .verify()
            .map_err(|e| PaymentError::BadSignature(e.to_string()))?
            .clone();
        let payer = Account::from(envelope.signer);
        let pay_to: Account = auth
            .pay_to
            .parse()
            .map_err(|_| PaymentError::WrongPayee(auth.pay_to.clone()))?;
        if pay_to != self.pay_to {
            return Err(PaymentError::WrongPayee(auth.pay_to));
        }
        let offered: u64 = auth.amount.parse().map_err(|_| {
            PaymentError::Malformed(format!("amount {:?} is not atomic units", auth.amount))
        })?;
        if offered < expected.price.micros() {
            return Err(PaymentError::Underpaid {
                offered,
                price: expected.price.micros(),
            });
        }
        let latest = expected
            .now
            .plus_millis(expected.max_timeout_seconds.saturating_mul(1000) + CLOCK_MARGIN_MS);
        if auth.expires_at <= expected.now || auth.expires_at > latest {
            return Err(PaymentError::Expired);
        }
        if auth.task_binding != expected.binding {
            return Err(PaymentError::BindingMismatch);
        }
        let payment_key = key_of(&payer, &auth);
        let reference = format!(
            "sim:{}",
            hex::encode(Sha256::digest(payment_key.0.as_bytes()))
        );
        Ok(Authorization {
            rail: RailId::Simulated,
            network: self.network.clone(),
            payer,
            payment_key,
            amount: expected.price,
            reference,
            holds: vec![LedgerChange::Debit {
                account: payer.to_string(),
                amount: expected.price,
            }],
            proof: serde_json::Value::Null,
        })
    }

    async fn capture(
        &self,
        authorization: &Authorization,
        payouts: &[Payout],
    ) -> Result<Completion, RailError> {
        Ok(Completion {
            reference: Some(authorization.reference.clone()),
            ledger: payouts
                .iter()
                .map(|p| LedgerChange::Credit {
                    account: p.account.clone(),
                    amount: p.amount,
                })
                .collect(),
        })
    }

    async fn void(
        &self,
        _authorization: &Authorization,
        refund: &Refund,
    ) -> Result<Completion, RailError> {
        Ok(Completion {
            reference: None,
            ledger: vec![LedgerChange::Credit {
                account: refund.account.clone(),
                amount: refund.amount,
            }],
        })
    }
}

/// Signs a simulated-rail payment for `requirements`, bound to `purchase.body`, with `key`.
pub fn sign_payment(
    requirements: &PaymentRequirements,
    purchase: &Purchase<'_>,
    key: &Keypair,
) -> Result<SimulatedPayment, d402_protocol::ProtocolError> {
    Ok(payment(
        requirements,
        purchase,
        Signed::sign(authorization(requirements, purchase), key)?,
    ))
}

/// The authorization a buyer signs to pay `requirements` for `purchase` (a fresh nonce,
/// expiring within the requirement's timeout).
pub fn authorization(
    requirements: &PaymentRequirements,
    purchase: &Purchase<'_>,
) -> SimulatedAuthorization {
    let nonce: [u8; 32] = rand::random();
    let lifetime = requirements.max_timeout_seconds.clamp(1, 3600) * 1000;
    SimulatedAuthorization {
        network: requirements.network.clone(),
        amount: requirements.amount.clone(),
        pay_to: requirements.pay_to.clone(),
        nonce: hex::encode(nonce),
        expires_at: purchase.now.plus_millis(lifetime),
        task_binding: request_binding(purchase.body),
    }
}

/// The `PAYMENT-SIGNATURE` document carrying `signed` (an authorization signed by whoever
/// holds the key: this process or an external signer).
pub fn payment(
    requirements: &PaymentRequirements,
    purchase: &Purchase<'_>,
    signed: Signed<SimulatedAuthorization>,
) -> SimulatedPayment {
    PaymentPayload {
        x402_version: X402_VERSION,
        resource: purchase.resource.cloned(),
        accepted: requirements.clone(),
        payload: signed,
        extensions: Default::default(),
    }
}

/// Whether `requirements` are the simulated rail's (any network named `d402:simulated…`).
pub fn is_simulated(requirements: &PaymentRequirements) -> bool {
    requirements.scheme == "exact"
        && requirements.network.starts_with(SIMULATED_NETWORK)
        && requirements.extra["authorization"] == SimulatedAuthorization::OBJECT_TYPE
}

/// A buyer's wallet on the simulated rail(s) whose network names start with `d402:simulated`.
pub struct SimulatedPayer {
    key: Keypair,
}

impl SimulatedPayer {
    /// Pays with `key`.
    pub fn new(key: Keypair) -> Self {
        Self { key }
    }
}

#[async_trait]
impl Payer for SimulatedPayer {
    fn can_pay(&self, requirements: &PaymentRequirements) -> bool {
        is_simulated(requirements)
    }

    async fn pay(
        &self,
        requirements: &PaymentRequirements,
        purchase: &Purchase<'_>,
    ) -> Result<PaymentPayload, PayError> {
        sign_payment(requirements, purchase, &self.key)
            .map(PaymentPayload::erased)
            .map_err(|e| PayError::Signing(e.to_string()))
    }
}
