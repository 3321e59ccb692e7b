//! The JSON-RPC endpoint of the local network: the Solana methods the rail, the payer and
//! common clients call, with the cluster's answer shapes.

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use d402_rail_solana::token;
use d402_rail_solana::{Address, USDC_DECIMALS};
use serde_json::{Value, json};
use solana_signature::Signature;
use solana_transaction::versioned::VersionedTransaction;

use super::{Chain, Landed};

/// A JSON-RPC error: code and message.
type RpcFailure = (i64, String);

const INVALID_PARAMS: i64 = -32602;
const METHOD_NOT_FOUND: i64 = -32601;
/// What a node answers when preflight simulation (or the blockhash check) refuses a
/// transaction.
const SIMULATION_FAILED: i64 = -32002;
/// What an unhealthy node answers.
const NODE_UNHEALTHY: i64 = -32005;

/// The router serving JSON-RPC at `/`.
pub(crate) fn router(chain: Arc<Mutex<Chain>>) -> axum::Router {
    axum::Router::new()
        .route("/", post(handle))
        .with_state(chain)
}

async fn handle(State(chain): State<Arc<Mutex<Chain>>>, Json(request): Json<Value>) -> Json<Value> {
    let answer = |request: &Value| {
        let id = request.get("id").cloned().unwrap_or(Value::Null);
        let method = request["method"].as_str().unwrap_or("");
        let params = request.get("params").cloned().unwrap_or(json!([]));
        let mut chain = chain.lock().expect("the chain lock");
        match dispatch(&mut chain, method, &params) {
            Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
            Err((code, message)) => {
                json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
            }
        }
    };
    Json(match &request {
        Value::Array(batch) => Value::Array(batch.iter().map(answer).collect()),
        single => answer(single),
    })
}

fn param_address(params: &Value, index: usize) -> Result<Address, RpcFailure> {
    params[index]
        .as_str()
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| {
            (
                INVALID_PARAMS,
                format!("Invalid param: not an address at {index}"),
            )
        })
}

fn context(chain: &Chain, value: Value) -> Value {
    json!({"context": {"slot": chain.slot, "apiVersion": "2.2.0"}, "value": value})
}

fn dispatch(chain: &mut Chain, method: &str, params: &Value) -> Result<Value, RpcFailure> {
    Ok(match method {
        "getHealth" => json!("ok"),
        "getVersion" => json!({"solana-core": "2.2.0", "feature-set": 0}),
        "getSlot" | "getBlockHeight" => json!(chain.slot),
        "getGenesisHash" => json!("d402LocaLnet11111111111111111111111111111111"),
        "getLatestBlockhash" => {
            let blockhash = chain.svm.latest_blockhash();
            context(
                chain,
                json!({"blockhash": blockhash.to_string(), "lastValidBlockHeight": chain.slot + 150}),
            )
        }
        "isBlockhashValid" => {
            let hash = params[0].as_str().and_then(|h| h.parse().ok());
            let valid = hash.is_some_and(|h| chain.recent.contains(&h));
            context(chain, json!(valid))
        }
        "getBalance" => {
            let address = param_address(params, 0)?;
            context(chain, json!(chain.svm.get_balance(&address).unwrap_or(0)))
        }
        "getMinimumBalanceForRentExemption" => {
            let size = params[0].as_u64().unwrap_or(0) as usize;
            json!(chain.svm.minimum_balance_for_rent_exemption(size))
        }
        "getFeeForMessage" => context(chain, json!(5000)),
        "getRecentPrioritizationFees" => json!([]),
        "getAccountInfo" => {
            let address = param_address(params, 0)?;
            let value = chain.svm.get_account(&address).map(|a| {
                json!({
                    "data": [BASE64.encode(&a.data), "base64"],
                    "executable": a.executable,
                    "lamports": a.lamports,
                    "owner": a.owner.to_string(),
                    "rentEpoch": 0,
                    "space": a.data.len(),
                })
            });
            context(chain, value.unwrap_or(Value::Null))
        }
        "getTokenAccountBalance" => {
            let address = param_address(params, 0)?;
            let (_, _, amount) = chain
                .svm
                .get_account(&address)
                .filter(|a| a.owner == token::TOKEN_PROGRAM)
                .and_then(|a| token::read_token_account(&a.data))
                .ok_or((
                    INVALID_PARAMS,
                    "Invalid param: not a Token account".to_string(),
                ))?;
            let ui = amount as f64 / 10f64.powi(i32::from(USDC_DECIMALS));
            context(
                chain,
                json!({"amount": amount.to_string(), "decimals": USDC_DECIMALS, "uiAmount": ui, "uiAmountString": ui.to_string()}),
            )
        }
        "requestAirdrop" => {
            let address = param_address(params, 0)?;
            let lamports = params[1]
                .as_u64()
                .ok_or((INVALID_PARAMS, "Invalid param: lamports".to_string()))?;
            let outcome = chain.svm.airdrop(&address, lamports);
            let meta = match &outcome {
                Ok(meta) => meta,
                Err(failed) => &failed.meta,
            };
            let signature = meta.signature;
            let (slot, block_time) = chain.next_block();
            chain.landed.insert(
                signature,
                Landed {
                    slot,
                    block_time,
                    bytes: None,
                    err: outcome.as_ref().err().map(|f| json!(f.err)),
                    fee: 0,
                    logs: Vec::new(),
                    memo: None,
                },
            );
            json!(signature.to_string())
        }
        "sendTransaction" => send_transaction(chain, params)?,
        "simulateTransaction" => {
            let transaction = decode_transaction(params)?;
            let value = match chain.svm.simulate_transaction(transaction) {
                Ok(info) => {
                    json!({"err": null, "logs": info.meta.logs, "unitsConsumed": info.meta.compute_units_consumed, "accounts": null, "returnData": null})
                }
                Err(failed) => {
                    json!({"err": failed.err, "logs": failed.meta.logs, "unitsConsumed": failed.meta.compute_units_consumed, "accounts": null, "returnData": null})
                }
            };
            context(chain, value)
        }
        "getSignatureStatuses" => {
            let signatures = params[0].as_array().cloned().unwrap_or_default();
            let statuses: Vec<Value> = signatures
                .iter()
                .map(|s| {
                    s.as_str()
                        .and_then(|s| s.parse::<Signature>().ok())
                        .and_then(|s| chain.landed.get(&s))
                        .map_or(Value::Null, |landed| {
                            let status = match &landed.err {
                                None => json!({"Ok": null}),
                                Some(err) => json!({"Err": err}),
                            };
                            json!({"slot": landed.slot, "confirmations": null, "err": landed.err, "status": status, "confirmationStatus": "finalized"})
                        })
                })
                .collect();
            context(chain, json!(statuses))
        }
        "getSignaturesForAddress" => {
            let address = param_address(params, 0)?;
            let limit = params[1]["limit"].as_u64().unwrap_or(1000) as usize;
            let signatures = chain.touched.get(&address).cloned().unwrap_or_default();
            let entries: Vec<Value> = signatures
                .iter()
                .rev()
                .take(limit)
                .filter_map(|s| {
                    let landed = chain.landed.get(s)?;
                    Some(json!({"signature": s.to_string(), "slot": landed.slot, "err": landed.err,
                        "memo": landed.memo, "blockTime": landed.block_time, "confirmationStatus": "finalized"}))
                })
                .collect();
            json!(entries)
        }
        "getTransaction" => {
            let signature: Signature = params[0]
                .as_str()
                .and_then(|s| s.parse().ok())
                .ok_or((INVALID_PARAMS, "Invalid param: not a signature".to_string()))?;
            match chain.landed.get(&signature) {
                Some(Landed {
                    bytes: Some(bytes),
                    slot,
                    block_time,
                    err,
                    fee,
                    logs,
                    ..
                }) => {
                    let status = match err {
                        None => json!({"Ok": null}),
                        Some(err) => json!({"Err": err}),
                    };
                    json!({
                        "slot": slot,
                        "blockTime": block_time,
                        "version": "legacy",
                        "transaction": [BASE64.encode(bytes), "base64"],
                        "meta": {
                            "err": err, "status": status, "fee": fee, "logMessages": logs,
                            "preBalances": [], "postBalances": [], "innerInstructions": [],
                            "preTokenBalances": [], "postTokenBalances": [], "rewards": [],
                            "loadedAddresses": {"writable": [], "readonly": []}
                        }
                    })
                }
                _ => Value::Null,
            }
        }
        other => return Err((METHOD_NOT_FOUND, format!("Method not found: {other}"))),
    })
}

/// The transaction in `params[0]`, encoded as `params[1].encoding` says (base58 by default).
fn decode_transaction(params: &Value) -> Result<VersionedTransaction, RpcFailure> {
    let text = params[0]
        .as_str()
        .ok_or((INVALID_PARAMS, "Invalid param: no transaction".to_string()))?;
    let bytes = match params[1]["encoding"].as_str().unwrap_or("base58") {
        "base64" => BASE64.decode(text).ok(),
        "base58" => bs58::decode(text).into_vec().ok(),
        _ => None,
    }
    .ok_or((
        INVALID_PARAMS,
        "Invalid param: transaction encoding".to_string(),
    ))?;
    bincode::deserialize(&bytes).map_err(|e| {
        (
            INVALID_PARAMS,
            format!("Invalid param: failed to deserialize: {e}"),
        )
    })
}

/// `sendTransaction`: the blockhash window, once per signature, preflight unless skipped;
/// then the transaction lands in a block of its own (failed ones too, paying their fee).
fn send_transaction(chain: &mut Chain, params: &Value) -> Result<Value, RpcFailure> {
    if chain.refusing {
        return Err((NODE_UNHEALTHY, "Node is unhealthy".into()));
    }
    let transaction = decode_transaction(params)?;
    let refused = |message: String| {
        (
            SIMULATION_FAILED,
            format!("Transaction simulation failed: {message}"),
        )
    };
    let signature = *transaction.signatures.first().ok_or((
        INVALID_PARAMS,
        "Invalid param: unsigned transaction".to_string(),
    ))?;
    if !chain
        .recent
        .contains(transaction.message.recent_blockhash())
    {
        return Err(refused("Blockhash not found".into()));
    }
    if chain.landed.contains_key(&signature) {
        return Err(refused(
            "This transaction has already been processed".into(),
        ));
    }
    let skip_preflight = params[1]["skipPreflight"].as_bool().unwrap_or(false);
    if !skip_preflight && let Err(failed) = chain.svm.simulate_transaction(transaction.clone()) {
        return Err(refused(format!(
            "{:?}; logs: {:?}",
            failed.err, failed.meta.logs
        )));
    }
    let bytes = bincode::serialize(&transaction).map_err(|e| (INVALID_PARAMS, e.to_string()))?;
    let keys = transaction.message.static_account_keys();
    for account in keys {
        chain.touched.entry(*account).or_default().push(signature);
    }
    let memos: Vec<String> = transaction
        .message
        .instructions()
        .iter()
        .filter_map(|i| token::read_memo(keys.get(usize::from(i.program_id_index))?, &i.data))
        .map(|text| format!("[{}] {text}", text.len()))
        .collect();
    let memo = (!memos.is_empty()).then(|| memos.join("; "));
    let outcome = chain.svm.send_transaction(transaction);
    let (meta, err) = match outcome {
        Ok(meta) => (meta, None),
        Err(failed) => (failed.meta, Some(json!(failed.err))),
    };
    let (slot, block_time) = chain.next_block();
    chain.landed.insert(
        signature,
        Landed {
            slot,
            block_time,
            bytes: Some(bytes),
            err,
            fee: meta.fee,
            logs: meta.logs,
            memo,
        },
    );
    Ok(json!(signature.to_string()))
}
