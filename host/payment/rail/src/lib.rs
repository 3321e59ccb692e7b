//! How money moves in d402, independent of any one rail.
//!
//! A [`PaymentRail`] carries a paid task through the whole money lifecycle:
//! 1. [`PaymentRail::requirements`]: one x402 `accepts[]` entry for a priced request;
//! 2. [`PaymentRail::authorize`], **before any work**: the payment is authentic, covers the
//!    price, is bound to this request, and the funds are proven (and, where the rail can,
//!    reserved or moved into escrow) — nothing is paid out; a refused payment's claimed key
//!    ([`PaymentRail::identify`]) finds the task of an idempotent retry;
//! 3. [`PaymentRail::capture`] **after acceptance**, with the split (payees and amounts);
//! 4. [`PaymentRail::void`] when the task fails: the buyer is refunded or never charged.
//!
//! What must be atomic with the task record (the simulated ledger's debits and credits) is
//! returned as [`LedgerChange`]s for the node's store to apply in the same transaction.
//! [`Payer`] is the buyer's side: it answers a requirement with a signed payload.

mod account;
mod rails;

pub use account::{Account, AccountError};
pub use d402_x402 as x402;
pub use rails::{DuplicateRail, Rails};

use async_trait::async_trait;
use d402_protocol::{Amount, ContentHash, Payout, Refund, Timestamp};
use d402_x402::{PaymentPayload, PaymentRequirements, Resource};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The payment rails d402 knows, by their `--rail` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RailId {
    /// The node's local ledger (development and tests).
    Simulated,
    /// x402 `exact` on Base (EIP-3009 USDC).
    X402Base,
    /// The Base task escrow, funded by a standard x402 authorization.
    X402BaseEscrow,
    /// Solana USDC paid directly, with a memo proof.
    SolanaDirect,
    /// x402 `exact` on Solana.
    X402Solana,
}

impl RailId {
    /// Every rail, in documentation order.
    pub const ALL: [RailId; 5] = [
        Self::Simulated,
        Self::X402Base,
        Self::X402BaseEscrow,
        Self::SolanaDirect,
        Self::X402Solana,
    ];

    /// The `--rail` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Simulated => "simulated",
            Self::X402Base => "x402-base",
            Self::X402BaseEscrow => "x402-base-escrow",
            Self::SolanaDirect => "solana-direct",
            Self::X402Solana => "x402-solana",
        }
    }
}

impl RailId {
    /// How far the rail is from carrying real money, as discovery and `/health` say it.
    pub fn maturity(self) -> &'static str {
        match self {
            Self::Simulated => "development only: the node's own ledger, no real money",
            Self::X402Base => "implemented, tested on a local chain; not audited",
            Self::X402BaseEscrow => {
                "Base task escrow: implemented, tested on a local chain; not audited — cap balances"
            }
            Self::SolanaDirect | Self::X402Solana => {
                "implemented, tested on a local SVM; not audited"
            }
        }
    }
}

impl std::fmt::Display for RailId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown `--rail` name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown payment rail {0:?}; known rails: simulated, x402-base, x402-base-escrow, solana-direct, x402-solana"
)]
pub struct UnknownRail(pub String);

impl std::str::FromStr for RailId {
    type Err = UnknownRail;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == text)
            .ok_or_else(|| UnknownRail(text.to_string()))
    }
}

/// `sha256:<hex>` of the RFC 8785 form of a request body: what a payment is bound to.
pub fn request_binding(body: &Value) -> String {
    let bytes = d402_protocol::canonical::to_vec(body)
        .unwrap_or_else(|_| serde_json::to_vec(body).unwrap_or_default());
    ContentHash::of(&bytes).to_string()
}

/// A payment's once-only key, unique across rails (e.g. `<network>:<payer>:<nonce>`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PaymentKey(pub String);

impl PaymentKey {
    /// The task a payment pays for: `task:` and 32 hex digits of sha256 of the key, so a
    /// replayed payment always names the same task.
    pub fn task_id(&self) -> String {
        format!(
            "task:{}",
            &hex::encode(Sha256::digest(self.0.as_bytes()))[..32]
        )
    }
}

/// What the gateway expects of a payment for one request.
#[derive(Debug, Clone)]
pub struct Expectation<'a> {
    /// The price.
    pub price: Amount,
    /// The request body's [`request_binding`].
    pub binding: &'a str,
    /// Now.
    pub now: Timestamp,
    /// Longest allowed authorization lifetime from now.
    pub max_timeout_seconds: u64,
}

/// A change to the simulated ledger that must commit atomically with the task record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum LedgerChange {
    /// Take `amount` from `account` (refused if the balance is short).
    Debit {
        /// The account (text form).
        account: String,
        /// How much.
        amount: Amount,
    },
    /// Add `amount` to `account`.
    Credit {
        /// The account (text form).
        account: String,
        /// How much.
        amount: Amount,
    },
}

/// A payment that verified and may be acted on: who pays, how much, its once-only key, and
/// what the rail needs later to capture or void it. Stored with the task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Authorization {
    /// The rail that authorized it.
    pub rail: RailId,
    /// The rail's network.
    pub network: String,
    /// The paying account.
    pub payer: Account,
    /// Consumed exactly once.
    pub payment_key: PaymentKey,
    /// What the task costs (what capture splits and void returns).
    pub amount: Amount,
    /// The rail's reference for the payment so far (a transaction, or a local id).
    pub reference: String,
    /// Ledger changes to apply atomically with the new task (the simulated debit).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holds: Vec<LedgerChange>,
    /// The rail's own proof, kept so capture or void can act after a restart.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub proof: Value,
}

/// What a capture or void did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Completion {
    /// The rail's reference for the money movement (e.g. a transaction hash), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Ledger changes to apply atomically with the settled task.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ledger: Vec<LedgerChange>,
}

/// Why a payment was refused (always before anything is charged).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    /// The header is not base64 JSON of the expected shape.
    #[error("malformed payment: {0}")]
    Malformed(String),
    /// The rail or network is not one this gateway accepts.
    #[error("unsupported payment network {0:?}")]
    UnsupportedNetwork(String),
    /// The signature does not verify.
    #[error("payment signature does not verify: {0}")]
    BadSignature(String),
    /// The authorization has expired (or lives longer than allowed).
    #[error("payment authorization expired or outside the allowed window")]
    Expired,
    /// Less than the price.
    #[error("payment of {offered} atomic units is below the price of {price}")]
    Underpaid {
        /// Authorised amount.
        offered: u64,
        /// The price.
        price: u64,
    },
    /// Paid to another account.
    #[error("payment is to {0}, not to this gateway")]
    WrongPayee(String),
    /// Bound to another request body.
    #[error("payment is bound to a different request body")]
    BindingMismatch,
    /// Another asset than the one this gateway prices in.
    #[error("payment is in asset {0}, which this gateway does not accept")]
    WrongAsset(String),
    /// The payer's balance does not cover the payment.
    #[error("the payer's balance does not cover the payment: {0}")]
    InsufficientFunds(String),
    /// The payment's transaction is not (yet) confirmed on chain, or does not exist.
    #[error("the payment's transaction is not confirmed on chain: {0}")]
    Unconfirmed(String),
    /// The payment's nonce was already used or cancelled on chain.
    #[error("the payment's authorization was already used or cancelled on chain")]
    AlreadyUsed,
    /// The chain would refuse the transfer (its simulation reverted).
    #[error("the transfer would fail on chain: {0}")]
    WouldFail(String),
    /// The rail cannot check the payment right now (e.g. its chain is unreachable).
    #[error("the payment rail cannot verify payments right now: {0}")]
    Unavailable(String),
}

impl PaymentError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed_payment",
            Self::UnsupportedNetwork(_) => "unsupported_network",
            Self::BadSignature(_) => "invalid_signature",
            Self::Expired => "payment_expired",
            Self::Underpaid { .. } => "underpaid",
            Self::WrongPayee(_) => "wrong_payee",
            Self::BindingMismatch => "binding_mismatch",
            Self::WrongAsset(_) => "wrong_asset",
            Self::InsufficientFunds(_) => "insufficient_funds",
            Self::Unconfirmed(_) => "payment_not_confirmed",
            Self::AlreadyUsed => "payment_already_used",
            Self::WouldFail(_) => "transfer_would_fail",
            Self::Unavailable(_) => "rail_unavailable",
        }
    }
}

/// One live check of a rail's readiness (e.g. "rpc", "chainId", "gasSigner").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadinessCheck {
    /// What was checked.
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was found (never a key).
    pub detail: String,
    /// The balance the check read, for a hot wallet (gas or fee payer, payouts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance: Option<WalletBalance>,
}

/// A hot wallet's balance as a readiness check read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletBalance {
    /// The asset, e.g. `ETH`, `SOL`, `USDC`.
    pub asset: String,
    /// Atomic units (wei, lamports, USDC micro-units), decimal digits (a string: wei
    /// overflow JSON numbers).
    pub atomic: String,
    /// Decimals of the atomic unit.
    pub decimals: u8,
}

impl WalletBalance {
    /// The balance in whole units of the asset (for display and monitoring thresholds).
    pub fn whole(&self) -> f64 {
        self.atomic.parse::<f64>().unwrap_or(f64::NAN) / 10f64.powi(i32::from(self.decimals))
    }
}

impl ReadinessCheck {
    /// The check `name`: passed or not, and what was found.
    pub fn new(name: &str, ok: bool, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ok,
            detail: detail.into(),
            balance: None,
        }
    }

    /// The same check, with the balance it read.
    pub fn with_balance(mut self, asset: &str, atomic: u128, decimals: u8) -> Self {
        self.balance = Some(WalletBalance {
            asset: asset.into(),
            atomic: atomic.to_string(),
            decimals,
        });
        self
    }
}

/// Why a capture or void did not complete. The task's decision stands either way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RailError {
    /// Not done yet (the chain is unreachable, a transaction is pending or was dropped):
    /// calling again later may complete it.
    #[error("not settled yet: {0}")]
    Retry(String),
    /// Can never complete (e.g. the authorization expired unused, or the payer used its
    /// nonce elsewhere): the buyer was not charged.
    #[error("cannot be settled: {0}")]
    Failed(String),
}

/// A payment rail on the gateway's side.
#[async_trait]
pub trait PaymentRail: Send + Sync {
    /// Which rail this is.
    fn id(&self) -> RailId;
    /// The x402 scheme of its requirements (`exact`).
    fn scheme(&self) -> &str;
    /// The network in x402 requirements (CAIP-2 or a d402 name).
    fn network(&self) -> &str;
    /// The asset in x402 requirements.
    fn asset(&self) -> &str;
    /// The account payments go to.
    fn pay_to(&self) -> &Account;
    /// Whether a paid retry that chose `requirements` is for this rail (by default: same
    /// scheme and network). Rails sharing a scheme and network tell theirs apart here.
    fn claims(&self, requirements: &PaymentRequirements) -> bool {
        requirements.scheme == self.scheme() && requirements.network == self.network()
    }
    /// The `accepts[]` entry for `price` (a rail may issue fresh terms for each).
    fn requirements(&self, price: Amount, max_timeout_seconds: u64) -> PaymentRequirements;
    /// The `accepts[]` entry for `price` offered to a request whose body has `binding`
    /// ([`request_binding`]): a rail whose payment must name the request (a memo) puts it
    /// in; by default the same as [`PaymentRail::requirements`].
    fn requirements_for(
        &self,
        price: Amount,
        max_timeout_seconds: u64,
        binding: &str,
    ) -> PaymentRequirements {
        let _ = binding;
        self.requirements(price, max_timeout_seconds)
    }
    /// The MPP payment method this rail speaks (`solana`), if it speaks MPP.
    fn mpp_method(&self) -> Option<&'static str> {
        None
    }
    /// The MPP `charge` request describing the same payment as this rail's requirement, to
    /// a request whose body has `binding`; `None` for rails that do not speak MPP.
    fn mpp_request(&self, price: Amount, binding: &str) -> Option<Value> {
        let _ = (price, binding);
        None
    }
    /// The once-only key `payment` claims, read without authenticating it or checking price,
    /// window or funds: a retry of an accepted payment must find its task even after the
    /// authorization expired. Cheap on purpose: the store recognizes a replay only by the
    /// byte-identical payload that [`PaymentRail::authorize`] authenticated when it was first
    /// accepted, so an unauthenticated key can never fetch another payer's task.
    fn identify(&self, payment: &PaymentPayload) -> Result<PaymentKey, PaymentError>;
    /// Verifies `payment` fully against `expected` before any work: amount, payee,
    /// window, binding, funds. Moves nothing out; returns what to hold atomically.
    async fn authorize(
        &self,
        payment: &PaymentPayload,
        expected: &Expectation<'_>,
    ) -> Result<Authorization, PaymentError>;
    /// Live checks that the rail can take and settle payments now (its chain answers with
    /// the expected chain id, its gas signer is funded, …). None for a local rail.
    async fn readiness(&self) -> Vec<ReadinessCheck> {
        Vec::new()
    }
    /// Whether the rail can pay a creator commission to its creator. A rail on which the
    /// whole price lands at one `payTo` and nothing is paid onward says no: a capability
    /// with a commission is then not sold on it (`requiresEscrowForDirectProviderPayTo`)
    /// rather than the commission being silently kept.
    fn pays_commissions(&self) -> bool {
        true
    }
    /// Whether capture pays each payee itself, on chain, to the address its payout names
    /// ([`Payout::address`]), instead of the whole price landing at [`PaymentRail::pay_to`]
    /// (payouts then owed by the provider) or in the node's ledger.
    fn pays_payees(&self) -> bool {
        false
    }
    /// Whether capture and void move money outside the node's store (on a chain). The node
    /// then records its decision durably before calling them, and calls capture again after
    /// a restart or a [`RailError::Retry`]; rails that only return [`LedgerChange`]s settle
    /// in the store transaction that records the decision.
    fn settles_externally(&self) -> bool {
        false
    }
    /// After acceptance: pays `payouts` (they add up to the authorized amount). A rail that
    /// [settles externally](PaymentRail::settles_externally) must make this idempotent: a
    /// second call for the same authorization (after a crash, or a retry) finds the first
    /// transfer on chain and never moves the money twice.
    async fn capture(
        &self,
        authorization: &Authorization,
        payouts: &[Payout],
    ) -> Result<Completion, RailError>;
    /// After a failure: refunds (or never charges) the buyer.
    async fn void(
        &self,
        authorization: &Authorization,
        refund: &Refund,
    ) -> Result<Completion, RailError>;
}

/// What a buyer is paying for.
#[derive(Debug, Clone)]
pub struct Purchase<'a> {
    /// The resource from the challenge.
    pub resource: Option<&'a Resource>,
    /// The request body the payment is bound to.
    pub body: &'a Value,
    /// Now.
    pub now: Timestamp,
}

/// Why a buyer could not pay.
#[derive(Debug, thiserror::Error)]
pub enum PayError {
    /// No offered requirement is one this payer can pay.
    #[error("the gateway offers no payment this wallet can make (offered: {0})")]
    NoMatchingRequirement(String),
    /// Signing failed.
    #[error("cannot sign the payment: {0}")]
    Signing(String),
    /// The payment's transaction did not land (yet).
    #[error("the payment's transaction did not land: {reason}")]
    NotLanded {
        /// Why.
        reason: String,
        /// Nothing moved and nothing will (it failed, or it can no longer land): the
        /// payment may be released. Otherwise it may still land.
        settled_unpaid: bool,
    },
}

/// A payment signed and not yet presented: what the buyer must record before acting on it.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// The payment to present.
    pub payment: PaymentPayload,
    /// A signed transaction the buyer itself must put on chain before presenting the
    /// payment (base64 of its bytes; a direct transfer), or `None` when presenting is all.
    pub transaction: Option<String>,
}

/// The buyer's side of a rail: makes the `PAYMENT-SIGNATURE` payload for a requirement.
#[async_trait]
pub trait Payer: Send + Sync {
    /// Whether this payer can pay `requirements` (scheme and network it knows).
    fn can_pay(&self, requirements: &PaymentRequirements) -> bool;
    /// The signed payment for `requirements`, as a `PAYMENT-SIGNATURE` document.
    async fn pay(
        &self,
        requirements: &PaymentRequirements,
        purchase: &Purchase<'_>,
    ) -> Result<PaymentPayload, PayError>;
    /// The payment for `requirements` signed but nothing sent: a buyer that must not lose a
    /// payment records it durably, then [`Payer::broadcast`]s its transaction, if any.
    /// The default signs with [`Payer::pay`], which sends nothing.
    async fn prepare(
        &self,
        requirements: &PaymentRequirements,
        purchase: &Purchase<'_>,
    ) -> Result<Prepared, PayError> {
        Ok(Prepared {
            payment: self.pay(requirements, purchase).await?,
            transaction: None,
        })
    }
    /// Puts a prepared `transaction` on chain (sent unless it landed already) and waits
    /// until it is confirmed. Payers whose payments carry no transaction refuse.
    async fn broadcast(&self, _transaction: &str) -> Result<(), PayError> {
        Err(PayError::Signing(
            "this payer's payments carry no transaction to send".into(),
        ))
    }
    /// The request header that carries `payment` (name, value): `PAYMENT-SIGNATURE` by
    /// default; a direct-transfer proof goes in `Authorization: Payment`.
    fn header(&self, payment: &PaymentPayload) -> (&'static str, String) {
        payment_signature(payment)
    }
}

/// The x402 v2 request header carrying `payment`: `PAYMENT-SIGNATURE`, base64 of its JSON.
pub fn payment_signature(payment: &PaymentPayload) -> (&'static str, String) {
    (
        d402_x402::headers::PAYMENT_SIGNATURE,
        d402_x402::encode_header(payment),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rail_names_round_trip_and_unknown_names_list_the_known() {
        for rail in RailId::ALL {
            assert_eq!(rail.as_str().parse::<RailId>(), Ok(rail));
            assert_eq!(
                serde_json::to_value(rail).unwrap(),
                Value::String(rail.as_str().into())
            );
        }
        let error = "paypal".parse::<RailId>().unwrap_err().to_string();
        assert!(
            error.contains("paypal") && error.contains("x402-base"),
            "{error}"
        );
    }

    #[test]
    fn bindings_ignore_formatting_and_task_ids_follow_keys() {
        let a: Value = serde_json::from_str(r#"{"b": 1, "a": [1, 2]}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":[1,2],"b":1}"#).unwrap();
        assert_eq!(request_binding(&a), request_binding(&b));
        assert_ne!(
            request_binding(&a),
            request_binding(&serde_json::json!({"a": 1}))
        );
        let key = PaymentKey("d402:simulated:payer:00".into());
        assert_eq!(key.task_id(), key.clone().task_id());
        assert_eq!(key.task_id().len(), "task:".len() + 32);
        assert_ne!(key.task_id(), PaymentKey("other".into()).task_id());
    }
}
