//! `d402-agent verify-receipt`: a cached receipt checked again, offline — its signatures
//! against the gateway key pinned on first use, that it is for the request the buyer made,
//! and that its payouts and refunds add up to what was paid.

use anyhow::Context;
use d402_protocol::{SettlementReceipt, Signed};
use serde_json::Value;

use crate::config::Paths;
use crate::ledger::{Entry, Ledger};
use crate::pins::KnownGateways;

/// Verifies the receipt of `task_id`; returns what was checked.
pub fn verify(paths: &Paths, task_id: &str) -> anyhow::Result<Vec<String>> {
    let entries = Ledger::new(paths.ledger()).entries()?;
    let (id, receipt) = entries
        .iter()
        .find_map(|e| match e {
            Entry::Settled {
                id,
                task_id: t,
                receipt,
                ..
            } if t == task_id => Some((id, receipt)),
            _ => None,
        })
        .with_context(|| format!("the ledger has no receipt for {task_id}"))?;
    let (gateway, amount) = entries
        .iter()
        .find_map(|e| match e {
            Entry::Reserved {
                id: r,
                gateway,
                amount,
                ..
            } if r == id => Some((gateway, *amount)),
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
    Ok(checked)
}
