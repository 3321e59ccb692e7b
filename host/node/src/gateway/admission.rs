//! Admission of a paid request: the server-owned execution policy, the 402 challenge (one
//! `accepts[]` entry per enabled rail), and [`Gateway::admit`] — decode the payment header,
//! pick its rail, name its task, authorize before any work, and store the running task
//! atomically with the payment (or find the task an idempotent retry names).

use std::sync::Arc;

use base64::Engine as _;
use d402_mpp::{Challenge, Credential, MppError};
use d402_payment::x402::{
    PaymentHeader, PaymentRequired, PaymentRequirements, Resource, TransferProof, X402_VERSION,
    payment_identifier,
};
use d402_payment::{
    Authorization, Expectation, PaymentError, PaymentRail, RailId, request_binding,
};
use d402_protocol::{ExecutionMode, Signed, TaskIntent, Timestamp};
use d402_store::{Accepted, PaymentClaim, StoreError, TaskRecord, TaskStatus};
use serde_json::Value;

use super::Gateway;
use crate::catalog::ServedCapability;
use crate::metrics::PaymentOutcome;

/// The x402 `bazaar` extension of the paid route `path` selling `served`.
fn bazaar(served: &ServedCapability, path: &str) -> Value {
    let manifest = served.loaded.manifest();
    d402_gateway_api::bazaar_extension(&d402_gateway_api::BazaarRoute {
        capability_id: &served.capability_id,
        input_schema: &manifest.input_schema,
        output_schema: &manifest.output_schema,
        bare_input: path == d402_gateway_api::capability_path(&served.capability_id),
    })
}

/// The execution policy a gateway applies to one capability: server-owned, whatever the
/// buyer sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecutionPolicy {
    /// Execution mode.
    pub mode: ExecutionMode,
    /// Workers leased per task.
    pub fanout: u32,
    /// Agreeing workers required (quorum mode; 1 otherwise).
    pub quorum: u32,
}

/// A task request the gateway will take payment for.
#[derive(Clone)]
pub struct TaskRequest {
    /// The capability that runs it.
    pub capability: Arc<ServedCapability>,
    /// The input (valid against the capability's input schema).
    pub input: Value,
    /// The whole request body, which the payment is bound to.
    pub body: Value,
}

/// What an MPP credential stands for (see [`Gateway::mpp_proof`]).
#[derive(Debug, Clone)]
pub struct MppProof {
    /// The direct-transfer proof, as an `Authorization: Payment` token.
    pub token: String,
    /// The MPP method (`solana`).
    pub method: String,
    /// The paying transaction.
    pub transaction: String,
}

/// What [`Gateway::admit`] decided about a paid request.
#[derive(Debug)]
pub enum Admission {
    /// A fresh payment: debited, the task stored as running.
    New(TaskRecord),
    /// The same payment for the same request again: the existing task.
    Replay(TaskRecord),
}

/// Why a paid request was refused (nothing was charged).
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The payment header is not text.
    #[error("payment header is not text")]
    NotText,
    /// The payment does not verify or does not cover the request.
    #[error(transparent)]
    Payment(#[from] PaymentError),
    /// The payment or the ledger refused it, or the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The rail the payment names does not sell this capability.
    #[error(
        "{capability} carries a creator commission that rail {rail} cannot pay out (requiresEscrowForDirectProviderPayTo); pay on another rail the challenge offers"
    )]
    NotOffered {
        /// The capability.
        capability: String,
        /// The rail.
        rail: d402_payment::RailId,
    },
    /// Signing the task intent failed.
    #[error("internal: {0}")]
    Internal(String),
}

impl Gateway {
    /// The execution policy for `served`: the configured mode when the manifest supports
    /// it, single otherwise.
    pub fn policy(&self, served: &ServedCapability) -> ExecutionPolicy {
        let config = &self.config;
        if config.node.mode == ExecutionMode::Single
            || !served
                .loaded
                .manifest()
                .execution_modes
                .contains(&config.node.mode)
        {
            return ExecutionPolicy {
                mode: ExecutionMode::Single,
                fanout: 1,
                quorum: 1,
            };
        }
        let quorum = if config.node.mode == ExecutionMode::Quorum {
            config.node.quorum
        } else {
            1
        };
        ExecutionPolicy {
            mode: config.node.mode,
            fanout: config.node.fanout,
            quorum,
        }
    }

    /// The rails that sell `served`: every enabled rail, except those that cannot pay out
    /// the creator commission `served` carries (`requiresEscrowForDirectProviderPayTo`).
    pub fn rails_selling<'a>(
        &'a self,
        served: &ServedCapability,
    ) -> impl Iterator<Item = &'a Arc<dyn PaymentRail>> + 'a {
        let commission = served.has_commission();
        self.rails
            .all()
            .iter()
            .filter(move |rail| !commission || rail.pays_commissions())
    }

    /// The `accepts[]` for `served` offered to a request whose body has `binding`: one entry
    /// per rail that sells it.
    pub fn requirements(
        &self,
        served: &ServedCapability,
        binding: &str,
    ) -> Vec<PaymentRequirements> {
        let timeout = self.config.rails.payment_timeout_seconds;
        self.rails_selling(served)
            .map(|rail| rail.requirements_for(served.price, timeout, binding))
            .collect()
    }

    /// The 402 challenge for `served` at `path` to a request whose body has `binding`, with
    /// `error` when a payment was refused.
    pub fn challenge(
        &self,
        served: &ServedCapability,
        path: &str,
        binding: &str,
        error: Option<String>,
    ) -> PaymentRequired {
        PaymentRequired {
            x402_version: X402_VERSION,
            error,
            resource: Resource {
                url: format!("{}{path}", self.base_url()),
                description: Some(format!("{} task", served.capability_id)),
                mime_type: Some("application/json".into()),
            },
            accepts: self.requirements(served, binding),
            extensions: [
                (
                    payment_identifier::PAYMENT_IDENTIFIER.to_string(),
                    payment_identifier::declaration(false),
                ),
                (d402_gateway_api::BAZAAR.to_string(), bazaar(served, path)),
            ]
            .into_iter()
            .collect(),
        }
    }

    /// The MPP `Payment` challenges for `served` to a request whose body has `binding`: one
    /// per rail that sells it and speaks MPP, valid as long as an x402 authorization may be.
    pub fn mpp_challenges(&self, served: &ServedCapability, binding: &str) -> Vec<Challenge> {
        let expires =
            Timestamp::now().unix_millis() / 1000 + self.config.rails.payment_timeout_seconds;
        self.rails_selling(served)
            .filter_map(|rail| {
                let method = rail.mpp_method()?;
                let request = rail.mpp_request(served.price, binding)?;
                Some(self.mpp.issue(method, "charge", &request, expires))
            })
            .collect()
    }

    /// The direct-transfer proof an MPP credential (`Authorization: Payment <token>`)
    /// stands for, once its challenge is recognized as this gateway's and unexpired: the
    /// proof's token for [`PaymentHeader::Authorization`], the method, and the transaction.
    pub fn mpp_proof(&self, token: &str) -> Result<MppProof, MppError> {
        let credential = Credential::parse(token)?;
        let challenge = &credential.challenge;
        self.mpp
            .recognize(challenge, Timestamp::now().unix_millis() / 1000)?;
        let rail = self
            .rails
            .all()
            .iter()
            .find(|r| r.mpp_method() == Some(challenge.method.as_str()))
            .filter(|_| challenge.intent == "charge")
            .ok_or_else(|| {
                MppError::Malformed(format!("method {:?} is not accepted", challenge.method))
            })?;
        let signature = match (
            credential.payload["type"].as_str(),
            credential.payload["signature"].as_str(),
        ) {
            (Some("signature"), Some(signature)) => signature.to_string(),
            _ => {
                return Err(MppError::Malformed(
                    "only push mode is accepted: payload {\"type\": \"signature\", \"signature\"}"
                        .into(),
                ));
            }
        };
        // A source such as did:pkh:solana:<chain>:<address> names the payer; without one the
        // transfer's signer is.
        let payer = credential
            .source
            .as_deref()
            .and_then(|s| s.rsplit(':').next())
            .unwrap_or("")
            .to_string();
        let proof = TransferProof {
            scheme: rail.scheme().to_string(),
            network: rail.network().to_string(),
            transaction: signature.clone(),
            payer,
        };
        Ok(MppProof {
            token: base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(serde_json::to_vec(&proof).expect("a proof serializes")),
            method: challenge.method.clone(),
            transaction: signature,
        })
    }

    /// Verifies the payment `header` for `request` and consumes the payment. The rail
    /// authorizes it in full and, in one durable transaction, the payment is consumed (the
    /// simulated debit applied) and the task stored as running — or, for a payment already
    /// used for the same request (or the same `payment-identifier` with the same payload),
    /// its task is returned. A payment the rail refuses is looked up by the key it claims
    /// first, so a retry finds its task even after the authorization expired.
    pub async fn admit(
        &self,
        request: TaskRequest,
        header: PaymentHeader<'_>,
    ) -> Result<Admission, Refusal> {
        let mut rail = None;
        let admission = self.admit_payment(request, header, &mut rail).await;
        let outcome = match &admission {
            Ok(Admission::New(_)) => PaymentOutcome::Accepted,
            Ok(Admission::Replay(_)) => PaymentOutcome::Replay,
            Err(Refusal::Store(StoreError::PaymentReused(_) | StoreError::PaymentIdReused(_))) => {
                PaymentOutcome::RejectedReplay
            }
            Err(_) => PaymentOutcome::Refused,
        };
        self.metrics()
            .payment(rail.map_or("unknown", |r: RailId| r.as_str()), outcome);
        admission
    }

    /// [`Gateway::admit`], naming in `rail_seen` the rail the payment was for once known.
    async fn admit_payment(
        &self,
        request: TaskRequest,
        header: PaymentHeader<'_>,
        rail_seen: &mut Option<RailId>,
    ) -> Result<Admission, Refusal> {
        let served = &request.capability;
        let binding = request_binding(&request.body);
        let payment = header
            .decode(|| self.requirements(served, &binding))
            .map_err(|e| PaymentError::Malformed(e.to_string()))?;
        let rail = self.rails.for_payment(&payment)?;
        *rail_seen = Some(rail.id());
        if !self.rails_selling(served).any(|r| Arc::ptr_eq(r, rail)) {
            return Err(Refusal::NotOffered {
                capability: served.capability_id.clone(),
                rail: rail.id(),
            });
        }
        let payment_id = payment_identifier::read(&payment.extensions)
            .map_err(|e| PaymentError::Malformed(e.to_string()))?;
        let digest = request_binding(&payment.payload);
        let expectation = Expectation {
            price: served.price,
            binding: &binding,
            now: Timestamp::now(),
            max_timeout_seconds: self.config.rails.payment_timeout_seconds,
        };
        let authorization = match rail.authorize(&payment, &expectation).await {
            Ok(authorization) => authorization,
            // A retry of an accepted payment finds its task even when the payment no longer
            // passes (expired, price changed); a payment that still passes meets its task in
            // the store's atomic accept below.
            Err(refused) => {
                let claim = PaymentClaim {
                    key: &rail.identify(&payment)?,
                    id: payment_id.as_deref(),
                    binding: &binding,
                    digest: &digest,
                };
                match self.store.find_paid(&claim)? {
                    Some(existing) => {
                        tracing::info!(task = %existing.task_id, "idempotent replay");
                        return Ok(Admission::Replay(existing));
                    }
                    None => return Err(refused.into()),
                }
            }
        };
        let record = self.running_record(request, authorization, payment_id, digest, binding)?;
        match self.store.accept_payment_async(&record).await? {
            Accepted::New => {
                tracing::info!(task = %record.task_id, rail = %record.payment.rail, "payment accepted");
                if let Some(network) = self.network().filter(|_| self.config.network.gossip_tasks)
                    && let Err(e) = network.publish(&record.intent).await
                {
                    tracing::warn!(error = %e, "cannot gossip the task intent");
                }
                Ok(Admission::New(record))
            }
            Accepted::Replay(existing) => {
                tracing::info!(task = %existing.task_id, "idempotent replay");
                Ok(Admission::Replay(*existing))
            }
        }
    }

    /// The record of a freshly authorized task: its signed intent, the payment, running.
    fn running_record(
        &self,
        request: TaskRequest,
        authorization: Authorization,
        payment_id: Option<String>,
        payment_digest: String,
        binding: String,
    ) -> Result<TaskRecord, Refusal> {
        let served = &request.capability;
        let task_id = authorization.payment_key.task_id();
        let manifest = served.loaded.manifest();
        let policy = self.policy(served);
        let intent = TaskIntent {
            task_id: task_id.clone(),
            capability_id: served.capability_id.clone(),
            manifest_cid: served.manifest_cid,
            input: request.input,
            mode: policy.mode,
            fanout: policy.fanout,
            quorum: policy.quorum,
            deadline_ms: manifest.limits.deadline_ms,
            budget: served.price,
            validation: manifest.validator.model,
            gateway: self.key.public(),
            created_at: Timestamp::now(),
        };
        let intent =
            Signed::sign(intent, &self.key).map_err(|e| Refusal::Internal(e.to_string()))?;
        let payment_response =
            super::payment_response(&authorization, Ok(&authorization.reference));
        Ok(TaskRecord {
            task_id,
            status: TaskStatus::Running,
            intent,
            payment: authorization,
            payment_id,
            payment_digest,
            binding,
            payment_response,
            workers: Vec::new(),
            result: None,
            evidence: None,
            error: None,
            settlement_error: None,
            created_at: Timestamp::now(),
            completed_at: None,
        })
    }
}
