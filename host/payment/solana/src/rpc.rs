//! A Solana JSON-RPC client for the calls d402 makes, on the workspace's reqwest: the same
//! code talks to a public RPC and to the local SVM network.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use solana_address::Address;
use solana_hash::Hash;
use solana_signature::Signature;
use solana_transaction::versioned::VersionedTransaction;
use url::Url;

/// Longest wait for one JSON-RPC answer.
const RPC_TIMEOUT: Duration = Duration::from_secs(20);

/// A JSON-RPC call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    /// The endpoint could not be reached or answered something that is not JSON-RPC.
    #[error("Solana RPC {method}: {message}")]
    Transport {
        /// The method called.
        method: &'static str,
        /// What went wrong.
        message: String,
    },
    /// The endpoint answered with a JSON-RPC error.
    #[error("Solana RPC {method} refused: {message} (code {code})")]
    Refused {
        /// The method called.
        method: &'static str,
        /// The JSON-RPC error code.
        code: i64,
        /// Its message.
        message: String,
    },
}

/// A transaction as the chain recorded it (`getTransaction`, base64 encoding).
#[derive(Debug, Clone)]
pub struct ConfirmedTransaction {
    /// The slot it landed in.
    pub slot: u64,
    /// The block's time, unix seconds, when the node knows it.
    pub block_time: Option<i64>,
    /// The transaction.
    pub transaction: VersionedTransaction,
    /// Its error, when it failed (it still landed and paid its fee).
    pub err: Option<Value>,
    /// Account keys loaded from address lookup tables (writable, then read-only).
    pub loaded: Vec<Address>,
}

impl ConfirmedTransaction {
    /// Every account key the instructions index: the message's static keys, then the
    /// loaded ones.
    pub fn account_keys(&self) -> Vec<Address> {
        let mut keys = self.transaction.message.static_account_keys().to_vec();
        keys.extend(self.loaded.iter().copied());
        keys
    }
}

/// Where a signature stands (`getSignatureStatuses`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureStatus {
    /// The slot it landed in.
    pub slot: u64,
    /// Its error, when it failed.
    pub err: Option<Value>,
    /// `processed`, `confirmed` or `finalized`.
    pub confirmation: String,
}

/// A Solana JSON-RPC endpoint.
pub struct SolanaRpc {
    url: Url,
    http: reqwest::Client,
    next_id: AtomicU64,
    commitment: &'static str,
}

impl SolanaRpc {
    /// The endpoint at `url`, reading at `confirmed` commitment (nothing is contacted yet).
    pub fn new(url: Url) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            url,
            http: reqwest::Client::builder()
                .timeout(RPC_TIMEOUT)
                .build()
                .expect("the TLS provider is installed"),
            next_id: AtomicU64::new(1),
            commitment: "confirmed",
        }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: &'static str,
        params: Value,
    ) -> Result<T, RpcError> {
        let transport = |message: String| RpcError::Transport { method, message };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let answer: Value = self
            .http
            .post(self.url.clone())
            .json(&request)
            .send()
            .await
            .map_err(|e| transport(e.to_string()))?
            .json()
            .await
            .map_err(|e| transport(e.to_string()))?;
        if let Some(error) = answer.get("error") {
            return Err(RpcError::Refused {
                method,
                code: error["code"].as_i64().unwrap_or(0),
                message: error["message"].as_str().unwrap_or("").to_string(),
            });
        }
        serde_json::from_value(answer["result"].clone()).map_err(|e| transport(e.to_string()))
    }

    /// The latest blockhash, to sign a transaction with.
    pub async fn latest_blockhash(&self) -> Result<Hash, RpcError> {
        let answer: Value = self
            .call(
                "getLatestBlockhash",
                json!([{"commitment": self.commitment}]),
            )
            .await?;
        answer["value"]["blockhash"]
            .as_str()
            .and_then(|h| h.parse().ok())
            .ok_or_else(|| RpcError::Transport {
                method: "getLatestBlockhash",
                message: format!("no blockhash in {answer}"),
            })
    }

    /// Whether a transaction signed with `blockhash` can still land.
    pub async fn blockhash_valid(&self, blockhash: &Hash) -> Result<bool, RpcError> {
        let answer: Value = self
            .call(
                "isBlockhashValid",
                json!([blockhash.to_string(), {"commitment": self.commitment}]),
            )
            .await?;
        Ok(answer["value"].as_bool().unwrap_or(false))
    }

    /// Sends a signed transaction (base64, with preflight); its signature.
    pub async fn send_transaction(
        &self,
        transaction: &VersionedTransaction,
    ) -> Result<Signature, RpcError> {
        let signature: String = self
            .call(
                "sendTransaction",
                json!([crate::transfer::to_base64(transaction), {"encoding": "base64", "preflightCommitment": self.commitment}]),
            )
            .await?;
        signature.parse().map_err(|_| RpcError::Transport {
            method: "sendTransaction",
            message: format!("not a signature: {signature}"),
        })
    }

    /// Where `signature` stands, if the node knows it.
    pub async fn signature_status(
        &self,
        signature: &Signature,
    ) -> Result<Option<SignatureStatus>, RpcError> {
        let answer: Value = self
            .call(
                "getSignatureStatuses",
                json!([[signature.to_string()], {"searchTransactionHistory": true}]),
            )
            .await?;
        let status = &answer["value"][0];
        if status.is_null() {
            return Ok(None);
        }
        Ok(Some(SignatureStatus {
            slot: status["slot"].as_u64().unwrap_or(0),
            err: Some(status["err"].clone()).filter(|e| !e.is_null()),
            confirmation: status["confirmationStatus"]
                .as_str()
                .unwrap_or("processed")
                .to_string(),
        }))
    }

    /// Waits (polling, up to `timeout`) until `signature` is confirmed; its status.
    pub async fn wait_confirmed(
        &self,
        signature: &Signature,
        timeout: Duration,
    ) -> Result<SignatureStatus, RpcError> {
        let start = tokio::time::Instant::now();
        let mut pause = Duration::from_millis(20);
        loop {
            if let Some(status) = self.signature_status(signature).await?
                && status.confirmation != "processed"
            {
                return Ok(status);
            }
            if start.elapsed() >= timeout {
                return Err(RpcError::Transport {
                    method: "getSignatureStatuses",
                    message: format!("{signature} not confirmed within {timeout:?}"),
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// The transaction `signature` names, at `confirmed` commitment, if it landed.
    pub async fn transaction(
        &self,
        signature: &Signature,
    ) -> Result<Option<ConfirmedTransaction>, RpcError> {
        let answer: Value = self
            .call(
                "getTransaction",
                json!([signature.to_string(), {
                    "encoding": "base64",
                    "commitment": self.commitment,
                    "maxSupportedTransactionVersion": 0
                }]),
            )
            .await?;
        if answer.is_null() {
            return Ok(None);
        }
        let malformed = |what: &str| RpcError::Transport {
            method: "getTransaction",
            message: format!("malformed answer: {what}"),
        };
        let encoded = answer["transaction"][0]
            .as_str()
            .ok_or_else(|| malformed("no transaction"))?;
        let transaction = crate::transfer::from_base64(encoded)
            .ok_or_else(|| malformed("transaction not base64 of a wire transaction"))?;
        let meta = &answer["meta"];
        let addresses = |key: &str| -> Result<Vec<Address>, RpcError> {
            meta["loadedAddresses"][key]
                .as_array()
                .map(|keys| {
                    keys.iter()
                        .map(|k| {
                            k.as_str()
                                .and_then(|k| k.parse().ok())
                                .ok_or_else(|| malformed("loaded address"))
                        })
                        .collect()
                })
                .unwrap_or(Ok(Vec::new()))
        };
        let mut loaded = addresses("writable")?;
        loaded.extend(addresses("readonly")?);
        Ok(Some(ConfirmedTransaction {
            slot: answer["slot"]
                .as_u64()
                .ok_or_else(|| malformed("no slot"))?,
            block_time: answer["blockTime"].as_i64(),
            transaction,
            err: Some(meta["err"].clone()).filter(|e| !e.is_null()),
            loaded,
        }))
    }

    /// A successful transaction touching `account` that carries `memo`, if there is one.
    /// `getSignaturesForAddress` lists the last 1,000 with their memos (`[length] text`,
    /// joined by `; `); only those whose memo field holds `memo` are fetched to confirm it.
    pub async fn find_memo(
        &self,
        account: &Address,
        memo: &str,
    ) -> Result<Option<Signature>, RpcError> {
        let entries: Vec<Value> = self
            .call(
                "getSignaturesForAddress",
                json!([account.to_string(), {"limit": 1000, "commitment": self.commitment}]),
            )
            .await?;
        let candidates = entries.iter().filter(|entry| {
            entry["err"].is_null() && entry["memo"].as_str().is_some_and(|m| m.contains(memo))
        });
        for entry in candidates {
            let Some(signature) = entry["signature"].as_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            let Some(landed) = self.transaction(&signature).await? else {
                continue;
            };
            if landed.err.is_none()
                && crate::transfer::TransactionContent::of(&landed)
                    .memos
                    .iter()
                    .any(|m| m == memo)
            {
                return Ok(Some(signature));
            }
        }
        Ok(None)
    }

    /// The token balance of token account `account`, or `None` if it does not exist.
    pub async fn token_balance(&self, account: &Address) -> Result<Option<u64>, RpcError> {
        match self
            .call::<Value>("getTokenAccountBalance", json!([account.to_string()]))
            .await
        {
            Ok(answer) => Ok(answer["value"]["amount"]
                .as_str()
                .and_then(|a| a.parse().ok())),
            Err(RpcError::Refused { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The lamports `account` holds.
    pub async fn balance(&self, account: &Address) -> Result<u64, RpcError> {
        let answer: Value = self
            .call("getBalance", json!([account.to_string()]))
            .await?;
        Ok(answer["value"].as_u64().unwrap_or(0))
    }
}
