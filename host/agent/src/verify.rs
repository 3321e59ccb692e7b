//! `d402-agent verify-receipt`: a cached receipt checked again — its signatures against
//! the gateway key pinned on first use, that it is for the request the buyer made, that its
//! payouts and refunds add up to what was paid, and, with an RPC configured, that the
//! payment is on chain: on x402 `exact` on Base, Solana direct and x402 `exact` on Solana
//! the transaction moving the amount to the `payTo`; on the Base task escrow the
//! transaction that paid out (or returned) everything the task's escrow was funded with.

use anyhow::Context;
use d402_protocol::{SettlementReceipt, Signed};
use serde_json::Value;

use crate::config::{AgentConfig, Paths, PayRail};
use crate::ledger::{Entry, Ledger};
use crate::pins::KnownGateways;
use d402_payment::RailId;
use serde_json::json;

/// Verifies the receipt of `task_id`; returns what was checked.
pub async fn verify(paths: &Paths, task_id: &str) -> anyhow::Result<Vec<String>> {
    let entries = Ledger::new(paths.ledger()).entries()?;
    let (id, receipt, payment_response) = entries
        .iter()
        .find_map(|e| match e {
            Entry::Settled {
                id,
                task_id: t,
                receipt,
                payment_response,
                ..
            } if t == task_id => Some((id, receipt, payment_response)),
            _ => None,
        })
        .with_context(|| format!("the ledger has no receipt for {task_id}"))?;
    let (gateway, amount, asset, pay_to) = entries
        .iter()
        .find_map(|e| match e {
            Entry::Reserved {
                id: r,
                gateway,
                amount,
                asset,
                pay_to,
                ..
            } if r == id => Some((gateway, *amount, asset, pay_to)),
            _ => None,
        })
        .with_context(|| format!("the ledger has no payment for {task_id}"))?;
    let body = entries
        .iter()
        .find_map(|e| match e {
            Entry::Paid { id: p, body, .. } if p == id => Some(body),
            _ => None,
        })
        .with_context(|| format!("the ledger has no request for {task_id}"))?;
    let key = KnownGateways::load(paths.known_gateways())?
        .key(gateway)
        .with_context(|| format!("no key is pinned for {gateway}"))?;
    let mut checked = Vec::new();
    d402_client::check_receipt(receipt, &key, task_id)?;
    checked.push(format!(
        "signatures: task intent, validation and settlement receipts signed by the pinned key {key}"
    ));

    let intent = &receipt["signed"]["taskIntent"]["payload"];
    anyhow::ensure!(
        intent["input"] == body["input"],
        "the receipt's task intent is for another input than the request made"
    );
    if let Some(capability) = body.get("capabilityId") {
        anyhow::ensure!(
            intent["capabilityId"] == *capability,
            "the receipt is for {}, the request asked for {capability}",
            intent["capabilityId"]
        );
    }
    checked.push(
        "request: the signed task intent carries the input (and capability) the request sent"
            .into(),
    );

    let settlement: Signed<SettlementReceipt> =
        serde_json::from_value::<Value>(receipt["signed"]["settlementReceipt"].clone())
            .and_then(serde_json::from_value)
            .context("the settlement receipt does not parse")?;
    let total = settlement
        .payload
        .total()
        .context("the settlement receipt's amounts overflow")?;
    anyhow::ensure!(
        total.micros() == amount,
        "payouts and refunds add up to {} atomic units, but {amount} was paid",
        total.micros()
    );
    checked.push(format!(
        "money: payouts and refunds add up to the {amount} atomic units paid"
    ));
    let transaction = payment_response
        .as_ref()
        .and_then(|r| r["transaction"].as_str())
        .unwrap_or_default();
    let paid = Paid {
        transaction,
        asset,
        pay_to,
        amount,
    };
    if let Ok(config) = AgentConfig::load(paths)
        && let Some(found) = on_chain(&config, &paid).await?
    {
        checked.push(found);
    }
    Ok(checked)
}

/// A payment as the ledger recorded it.
struct Paid<'a> {
    transaction: &'a str,
    asset: &'a str,
    pay_to: &'a str,
    amount: u64,
}

/// An ERC-20 transfer a transaction made (addresses lower-case 0x hex).
struct EvmTransfer {
    from: String,
    to: String,
    value: u128,
}

/// The `asset` transfers of EVM `transaction`, which must be on chain as a success.
async fn evm_transfers(
    url: &str,
    transaction: &str,
    asset: &str,
) -> anyhow::Result<Vec<EvmTransfer>> {
    let request = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_getTransactionReceipt", "params": [transaction]});
    let answer = crate::search::post_json(url, &request).await?;
    let receipt = &answer["result"];
    anyhow::ensure!(
        receipt["status"] == "0x1",
        "chain: the payment transaction {transaction} is not on chain as a success"
    );
    // A topic is a 32-byte word: the address is its last 20 bytes.
    let address = |topic: &Value| {
        topic
            .as_str()
            .filter(|t| t.len() == 66)
            .map(|t| format!("0x{}", t[26..].to_ascii_lowercase()))
    };
    Ok(receipt["logs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|log| {
            log["address"]
                .as_str()
                .is_some_and(|a| a.eq_ignore_ascii_case(asset))
                && log["topics"][0] == TRANSFER_TOPIC
        })
        .filter_map(|log| {
            Some(EvmTransfer {
                from: address(&log["topics"][1])?,
                to: address(&log["topics"][2])?,
                value: log["data"]
                    .as_str()
                    .and_then(|d| u128::from_str_radix(d.trim_start_matches("0x"), 16).ok())?,
            })
        })
        .collect())
}

/// The ERC-20 `Transfer(address,address,uint256)` event's topic.
const TRANSFER_TOPIC: &str = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";

/// Looks the payment up on chain when the rail and an RPC allow it: `Some(what was found)`,
/// `None` when not checkable here, an error when the chain contradicts the ledger.
async fn on_chain(config: &AgentConfig, paid: &Paid<'_>) -> anyhow::Result<Option<String>> {
    match config.rail() {
        PayRail::Pay(rail @ (RailId::X402Base | RailId::X402BaseEscrow)) => {
            let Some(url) = &config.evm_rpc_url else {
                return Ok(None);
            };
            let transfers = evm_transfers(url, paid.transaction, paid.asset).await?;
            let pay_to = paid.pay_to.to_ascii_lowercase();
            if rail == RailId::X402Base {
                anyhow::ensure!(
                    transfers
                        .iter()
                        .any(|t| t.to == pay_to && t.value == u128::from(paid.amount)),
                    "chain: transaction {} moves no {} of {} to {}",
                    paid.transaction,
                    paid.amount,
                    paid.asset,
                    paid.pay_to
                );
                return Ok(Some(format!(
                    "chain: transaction {} moved {} to {}",
                    paid.transaction, paid.amount, paid.pay_to
                )));
            }
            // The task's own escrow (its address derives from the terms the buyer signed
            // for) paid out or returned everything it was funded with.
            let out_of_escrow: u128 = transfers
                .iter()
                .filter(|t| t.from == pay_to)
                .map(|t| t.value)
                .sum();
            anyhow::ensure!(
                out_of_escrow == u128::from(paid.amount),
                "chain: transaction {} moves {out_of_escrow} out of the escrow {}, not the {} paid into it",
                paid.transaction,
                paid.pay_to,
                paid.amount
            );
            Ok(Some(format!(
                "chain: transaction {} split the {} paid into the escrow {}",
                paid.transaction, paid.amount, paid.pay_to
            )))
        }
        PayRail::Pay(RailId::SolanaDirect | RailId::X402Solana) => {
            use d402_rail_solana::token::associated_token_address;
            let Some(solana) = &config.solana else {
                return Ok(None);
            };
            let signature: d402_rail_solana::Signature =
                paid.transaction.parse().map_err(|_| {
                    anyhow::anyhow!("chain: {:?} is not a Solana signature", paid.transaction)
                })?;
            let rpc = d402_rail_solana::SolanaRpc::new(url::Url::parse(&solana.rpc_url)?);
            let landed = rpc.transaction(&signature).await?.with_context(|| {
                format!("chain: the payment transaction {signature} is not on chain")
            })?;
            anyhow::ensure!(
                landed.err.is_none(),
                "chain: the payment transaction {signature} failed"
            );
            let mint: d402_rail_solana::Address = paid
                .asset
                .parse()
                .map_err(|_| anyhow::anyhow!("asset {:?} is not a mint", paid.asset))?;
            let owner: d402_rail_solana::Address = paid
                .pay_to
                .parse()
                .map_err(|_| anyhow::anyhow!("payTo {:?} is not a Solana address", paid.pay_to))?;
            let destination = associated_token_address(&owner, &mint);
            let moved = d402_rail_solana::transfer::TransactionContent::of(&landed)
                .transfers
                .iter()
                .any(|t| t.mint == mint && t.destination == destination && t.amount >= paid.amount);
            anyhow::ensure!(
                moved,
                "chain: transaction {signature} moves no {} of {mint} to {owner}",
                paid.amount
            );
            Ok(Some(format!(
                "chain: transaction {signature} moved {} to {owner}",
                paid.amount
            )))
        }
        _ => Ok(None),
    }
}
