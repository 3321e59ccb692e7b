//! A buyer in a few lines on the buyer crate: pay a gateway's simulated rail for one task
//! and print the result with its checked receipt.
//!
//! ```sh
//! cargo run -p d402-client --example buy -- http://127.0.0.1:8402 buyer.json \
//!     util.json_transform@1 '{"value": {"a": 1}, "select": ["a"]}'
//! ```

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(gateway), Some(key), Some(capability), Some(input)) =
        (args.next(), args.next(), args.next(), args.next())
    else {
        anyhow::bail!("usage: buy GATEWAY KEY_FILE CAPABILITY INPUT_JSON");
    };
    let payer = d402_rail_simulated::SimulatedPayer::new(d402_wallet::load(key.as_ref())?);
    let input: serde_json::Value = serde_json::from_str(&input)?;
    let body = serde_json::json!({"capabilityId": capability, "input": input});
    let outcome = d402_client::Client::new(&gateway)?
        .run_task(&body, &payer)
        .await?;
    println!(
        "{}",
        serde_json::json!({"task": outcome.task, "receipt": outcome.receipt})
    );
    Ok(())
}
