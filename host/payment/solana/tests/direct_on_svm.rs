//! The `solana-direct` rail against the local SVM network, through its JSON-RPC endpoint:
//! a USDC transfer with the request's memo authorizes the task; every wrong, failed,
//! missing, stale or foreign transfer is refused; a refund is sent once, however often
//! void is called.

use std::time::Duration;

use base64::Engine;
use d402_payment::x402::{PaymentPayload, TransferProof, X402_VERSION};
use d402_payment::{Expectation, PaymentError, PaymentRail, RailError};
use d402_protocol::{Amount, Refund, Timestamp};
use d402_rail_solana::transfer::{self, TransferOrder};
use d402_rail_solana::{Address, Keypair, SolanaDirectRail, SolanaRpc, USDC_DECIMALS, USDC_MINT};
use d402_solana_devnet::SolanaDevnet;
use serde_json::json;
use solana_signer::Signer;

mod common;

use common::FUNDS;

const PRICE: u64 = 10_000;
const BINDING: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

struct Fixture {
    devnet: SolanaDevnet,
    rail: SolanaDirectRail,
    rpc: SolanaRpc,
    buyer: Keypair,
    gateway: Address,
}

async fn fixture() -> Fixture {
    let common::Network {
        devnet,
        rpc,
        buyer,
        wallet,
        gateway,
    } = common::network().await;
    let rail = SolanaDirectRail::new(common::config(), devnet.rpc_url(), wallet);
    Fixture {
        devnet,
        rail,
        rpc,
        buyer,
        gateway,
    }
}

fn expected(now: Timestamp) -> Expectation<'static> {
    Expectation {
        price: Amount::from_micros(PRICE),
        binding: BINDING,
        now,
        max_timeout_seconds: 300,
    }
}

impl Fixture {
    /// Sends `order` from the buyer; the proof naming it.
    async fn pay(&self, order: TransferOrder<'_>) -> PaymentPayload {
        let signature = transfer::send(&self.rpc, &self.buyer, &order, Duration::from_secs(10))
            .await
            .unwrap();
        self.proof(&signature.to_string(), &self.buyer.pubkey().to_string())
    }

    fn proof(&self, transaction: &str, payer: &str) -> PaymentPayload {
        let accepted = self
            .rail
            .requirements_for(Amount::from_micros(PRICE), 300, BINDING);
        PaymentPayload {
            x402_version: X402_VERSION,
            resource: None,
            payload: serde_json::to_value(TransferProof {
                scheme: accepted.scheme.clone(),
                network: accepted.network.clone(),
                transaction: transaction.into(),
                payer: payer.into(),
            })
            .unwrap(),
            accepted,
            extensions: Default::default(),
        }
    }

    fn order(&self) -> TransferOrder<'static> {
        TransferOrder {
            mint: USDC_MINT,
            decimals: USDC_DECIMALS,
            recipient: self.gateway,
            amount: PRICE,
            memo: None,
        }
    }
}

#[tokio::test]
async fn a_transfer_with_the_request_memo_pays_and_a_refund_is_sent_once() {
    let f = fixture().await;
    let requirement = f
        .rail
        .requirements_for(Amount::from_micros(PRICE), 300, BINDING);
    assert_eq!(requirement.scheme, "d402-solana-transfer");
    assert_eq!(requirement.network, "solana:localnet");
    assert_eq!(requirement.asset, USDC_MINT.to_string());
    assert_eq!(requirement.pay_to, f.gateway.to_string());
    let memo = format!("d402:{BINDING}");
    assert_eq!(requirement.extra["memo"], json!(memo));

    let payment = f
        .pay(TransferOrder {
            memo: Some(&memo),
            ..f.order()
        })
        .await;
    let authorization = f
        .rail
        .authorize(&payment, &expected(Timestamp::now()))
        .await
        .unwrap();
    assert_eq!(authorization.amount, Amount::from_micros(PRICE));
    assert_eq!(
        authorization.payer.to_string(),
        f.buyer.pubkey().to_string()
    );
    assert_eq!(f.devnet.usdc_balance(&f.gateway), PRICE);
    assert_eq!(
        f.rail.identify(&payment).unwrap(),
        authorization.payment_key
    );
    // A legacy `dnc:` memo names the request too.
    let legacy = f
        .pay(TransferOrder {
            memo: Some(&format!("dnc:{BINDING}")),
            ..f.order()
        })
        .await;
    f.rail
        .authorize(&legacy, &expected(Timestamp::now()))
        .await
        .unwrap();

    let refund = Refund {
        account: f.buyer.pubkey().to_string(),
        amount: Amount::from_micros(PRICE),
        reason: "rejected".into(),
        transaction: None,
    };
    let first = f.rail.void(&authorization, &refund).await.unwrap();
    let again = f.rail.void(&authorization, &refund).await.unwrap();
    assert!(first.reference.is_some());
    assert_eq!(
        first.reference, again.reference,
        "found by its memo, not sent twice"
    );
    assert_eq!(
        f.devnet.usdc_balance(&f.buyer.pubkey()),
        FUNDS - 2 * PRICE + PRICE
    );
    assert_eq!(f.devnet.usdc_balance(&f.gateway), PRICE);
}

#[tokio::test]
async fn wrong_failed_missing_stale_and_foreign_transfers_are_refused() {
    let f = fixture().await;
    let memo = format!("d402:{BINDING}");
    let now = Timestamp::now();
    let refused = async |payment: &PaymentPayload, at: Timestamp| {
        f.rail.authorize(payment, &expected(at)).await.unwrap_err()
    };
    // To another account.
    let elsewhere = f
        .pay(TransferOrder {
            recipient: Keypair::new().pubkey(),
            memo: Some(&memo),
            ..f.order()
        })
        .await;
    assert!(matches!(
        refused(&elsewhere, now).await,
        PaymentError::WrongPayee(_)
    ));
    // The wrong mint, to the gateway's wallet.
    let other_mint = Keypair::new().pubkey();
    f.devnet
        .fund_token(&other_mint, &f.buyer.pubkey(), FUNDS)
        .unwrap();
    let wrong_mint = f
        .pay(TransferOrder {
            mint: other_mint,
            memo: Some(&memo),
            ..f.order()
        })
        .await;
    let error = refused(&wrong_mint, now).await;
    assert!(
        matches!(
            error,
            PaymentError::WrongPayee(_) | PaymentError::WrongAsset(_)
        ),
        "{error}"
    );
    // Less than the price.
    let cheap = f
        .pay(TransferOrder {
            amount: PRICE - 1,
            memo: Some(&memo),
            ..f.order()
        })
        .await;
    assert!(matches!(
        refused(&cheap, now).await,
        PaymentError::Underpaid { .. }
    ));
    // A memo for another request, and none.
    let other = f
        .pay(TransferOrder {
            memo: Some("d402:sha256:22"),
            ..f.order()
        })
        .await;
    assert_eq!(refused(&other, now).await, PaymentError::BindingMismatch);
    let bare = f.pay(f.order()).await;
    assert_eq!(refused(&bare, now).await, PaymentError::BindingMismatch);
    // A transaction that landed with an error (sent without preflight).
    let failing = transfer::sign(
        &f.buyer,
        &TransferOrder {
            amount: FUNDS * 10,
            memo: Some(&memo),
            ..f.order()
        },
        f.rpc.latest_blockhash().await.unwrap(),
    );
    let bytes =
        base64::engine::general_purpose::STANDARD.encode(bincode::serialize(&failing).unwrap());
    let sent: serde_json::Value = reqwest::Client::new()
        .post(f.devnet.rpc_url())
        .json(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "sendTransaction",
            "params": [bytes, {"encoding": "base64", "skipPreflight": true}]}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let failed = f.proof(
        sent["result"].as_str().unwrap(),
        &f.buyer.pubkey().to_string(),
    );
    assert!(matches!(
        refused(&failed, now).await,
        PaymentError::WouldFail(_)
    ));
    // A signature that does not exist.
    let missing = f.proof(
        &f.buyer.sign_message(b"never sent").to_string(),
        &f.buyer.pubkey().to_string(),
    );
    assert!(matches!(
        refused(&missing, now).await,
        PaymentError::Unconfirmed(_)
    ));
    // Outside the payment window: a good payment presented two hours later.
    let good = f
        .pay(TransferOrder {
            memo: Some(&memo),
            ..f.order()
        })
        .await;
    let later = Timestamp::from_unix_millis(now.unix_millis() + 2 * 3600 * 1000);
    assert_eq!(refused(&good, later).await, PaymentError::Expired);
    // Someone else's transfer claimed as mine.
    let foreign = f.proof(
        good.payload["transaction"].as_str().unwrap(),
        &Keypair::new().pubkey().to_string(),
    );
    assert!(matches!(
        refused(&foreign, now).await,
        PaymentError::BadSignature(_)
    ));
    // Malformed proofs.
    for (transaction, payer) in [("not-a-signature", "x"), ("", "")] {
        assert!(matches!(
            refused(&f.proof(transaction, payer), now).await,
            PaymentError::Malformed(_)
        ));
    }
    f.rail.authorize(&good, &expected(now)).await.unwrap();
}

#[tokio::test]
async fn void_of_an_unreadable_authorization_is_a_final_failure() {
    let f = fixture().await;
    let broken = d402_payment::Authorization {
        rail: d402_payment::RailId::SolanaDirect,
        network: "solana:localnet".into(),
        payer: f.buyer.pubkey().to_string().parse().unwrap(),
        payment_key: d402_payment::PaymentKey("k".into()),
        amount: Amount::from_micros(PRICE),
        reference: String::new(),
        holds: Vec::new(),
        proof: json!({"nothing": true}),
    };
    let refund = Refund {
        account: String::new(),
        amount: Amount::from_micros(PRICE),
        reason: "rejected".into(),
        transaction: None,
    };
    assert!(matches!(
        f.rail.void(&broken, &refund).await,
        Err(RailError::Failed(_))
    ));
    assert_eq!(f.devnet.usdc_balance(&f.gateway), 0, "nothing sent");
}
