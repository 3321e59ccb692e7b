//! x402 `exact` on SVM against the local network: a client's partially-signed transaction
//! (compute budget, one `TransferChecked`, the request's memo, the gateway as fee payer) is
//! checked, co-signed and submitted before any work, once however often it is presented;
//! every layout the scheme forbids is refused with nothing submitted.

use d402_payment::x402::{PaymentPayload, PaymentRequirements, X402_VERSION};
use d402_payment::{Expectation, PaymentError, PaymentRail};
use d402_protocol::{Amount, Timestamp};
use d402_rail_solana::exact;
use d402_rail_solana::token::{self, associated_token_address};
use d402_rail_solana::{
    Address, Keypair, Signer, SolanaRpc, USDC_DECIMALS, USDC_MINT, X402SolanaRail,
};
use d402_solana_devnet::SolanaDevnet;
use serde_json::json;
use solana_instruction::{AccountMeta, Instruction};

mod common;

use common::FUNDS;

const PRICE: u64 = 10_000;
const BINDING: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

struct Fixture {
    devnet: SolanaDevnet,
    rail: X402SolanaRail,
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
    // The scheme's transfer does not create the recipient's token account.
    devnet.fund_usdc(&gateway, 0).unwrap();
    Fixture {
        rail: X402SolanaRail::new(common::config(), devnet.rpc_url(), wallet),
        rpc,
        devnet,
        buyer,
        gateway,
    }
}

impl Fixture {
    fn challenge(&self) -> PaymentRequirements {
        self.rail
            .requirements_for(Amount::from_micros(PRICE), 300, BINDING)
    }

    fn transfer(&self, amount: u64) -> Instruction {
        token::transfer_checked(
            associated_token_address(&self.buyer.pubkey(), &USDC_MINT),
            USDC_MINT,
            associated_token_address(&self.gateway, &USDC_MINT),
            self.buyer.pubkey(),
            amount,
            USDC_DECIMALS,
        )
    }

    /// The layout an `@x402/svm` client sends, with `instructions` in place of its own.
    async fn pay(&self, instructions: &[Instruction], fee_payer: Address) -> PaymentPayload {
        let blockhash = self.rpc.latest_blockhash().await.unwrap();
        let transaction =
            exact::partially_signed(&fee_payer, &self.buyer, instructions, blockhash).unwrap();
        PaymentPayload {
            x402_version: X402_VERSION,
            resource: None,
            accepted: self.challenge(),
            payload: exact::payload(&transaction),
            extensions: Default::default(),
        }
    }

    fn standard(&self) -> Vec<Instruction> {
        vec![
            exact::compute_unit_limit(20_000),
            exact::compute_unit_price(1),
            self.transfer(PRICE),
            token::memo(&format!("d402:{BINDING}")),
        ]
    }
}

/// What a refused layout's error must be.
type Expected = fn(&PaymentError) -> bool;

fn expected() -> Expectation<'static> {
    Expectation {
        price: Amount::from_micros(PRICE),
        binding: BINDING,
        now: Timestamp::now(),
        max_timeout_seconds: 300,
    }
}

#[tokio::test]
async fn a_client_transaction_is_co_signed_and_submitted_once_before_work() {
    let f = fixture().await;
    let challenge = f.challenge();
    assert_eq!(challenge.extra["feePayer"], json!(f.gateway.to_string()));
    assert_eq!(challenge.extra["memo"], json!(format!("d402:{BINDING}")));
    let payment = f.pay(&f.standard(), f.gateway).await;
    let key = f.rail.identify(&payment).unwrap();
    let authorization = f.rail.authorize(&payment, &expected()).await.unwrap();
    assert_eq!(
        authorization.payment_key, key,
        "the key names the co-signed transaction"
    );
    assert_eq!(
        authorization.payer.to_string(),
        f.buyer.pubkey().to_string()
    );
    assert_eq!(
        f.devnet.usdc_balance(&f.gateway),
        PRICE,
        "paid before any work"
    );
    let again = f.rail.authorize(&payment, &expected()).await.unwrap();
    assert_eq!(
        again.reference, authorization.reference,
        "presented again: found, not re-sent"
    );
    assert_eq!(f.devnet.usdc_balance(&f.buyer.pubkey()), FUNDS - PRICE);
    let landed = f
        .rpc
        .transaction(&authorization.reference.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        landed.transaction.message.static_account_keys()[0],
        f.gateway,
        "the gateway paid the fee"
    );
}

#[tokio::test]
async fn layouts_the_scheme_forbids_are_refused_with_nothing_submitted() {
    let f = fixture().await;
    let memo = token::memo(&format!("d402:{BINDING}"));
    let stranger = Keypair::new().pubkey();
    let mut to_stranger = f.transfer(PRICE);
    to_stranger.accounts[2] =
        AccountMeta::new(associated_token_address(&stranger, &USDC_MINT), false);
    // The fee payer named in the memo (the buyer still signs the transfer): without the
    // check, this payment would pass every other one.
    let mut fee_payer_named = token::memo(&format!("d402:{BINDING}"));
    fee_payer_named.accounts = vec![AccountMeta::new_readonly(f.gateway, false)];
    let system_transfer = Instruction {
        program_id: token::SYSTEM_PROGRAM,
        accounts: vec![
            AccountMeta::new(f.buyer.pubkey(), true),
            AccountMeta::new(stranger, false),
        ],
        data: {
            let mut data = 2u32.to_le_bytes().to_vec();
            data.extend_from_slice(&1u64.to_le_bytes());
            data
        },
    };
    let cases: Vec<(&str, Vec<Instruction>, Expected)> = vec![
        (
            "two transfers",
            vec![
                exact::compute_unit_limit(1),
                f.transfer(PRICE),
                f.transfer(1),
                memo.clone(),
            ],
            |e| matches!(e, PaymentError::Malformed(_)),
        ),
        (
            "to another account",
            vec![exact::compute_unit_limit(1), to_stranger, memo.clone()],
            |e| matches!(e, PaymentError::WrongPayee(_)),
        ),
        (
            "the fee payer in an instruction",
            vec![
                exact::compute_unit_limit(1),
                f.transfer(PRICE),
                fee_payer_named,
            ],
            |e| matches!(e, PaymentError::Malformed(m) if m.contains("fee payer")),
        ),
        (
            "a compute price above the cap",
            vec![
                exact::compute_unit_price(5_000_001),
                f.transfer(PRICE),
                memo.clone(),
            ],
            |e| matches!(e, PaymentError::Malformed(_)),
        ),
        (
            "an extra program",
            vec![system_transfer, f.transfer(PRICE), memo.clone()],
            |e| matches!(e, PaymentError::Malformed(_)),
        ),
        (
            "less than the price",
            vec![
                exact::compute_unit_limit(1),
                f.transfer(PRICE - 1),
                memo.clone(),
            ],
            |e| matches!(e, PaymentError::Underpaid { .. }),
        ),
        (
            "a memo for another request",
            vec![
                exact::compute_unit_limit(1),
                f.transfer(PRICE),
                token::memo("d402:sha256:33"),
            ],
            |e| *e == PaymentError::BindingMismatch,
        ),
    ];
    for (case, instructions, expected_error) in cases {
        let payment = f.pay(&instructions, f.gateway).await;
        let error = f.rail.authorize(&payment, &expected()).await.unwrap_err();
        assert!(expected_error(&error), "{case}: {error}");
    }
    // Another fee payer than the gateway.
    let mut paid_by_buyer = f.standard();
    paid_by_buyer.remove(0);
    let payment = f.pay(&paid_by_buyer, f.buyer.pubkey()).await;
    let error = f.rail.authorize(&payment, &expected()).await.unwrap_err();
    assert!(
        matches!(
            error,
            PaymentError::WrongPayee(_) | PaymentError::Malformed(_)
        ),
        "{error}"
    );
    // Garbage.
    let mut garbage = f.pay(&f.standard(), f.gateway).await;
    garbage.payload = json!({"transaction": "not base64!"});
    assert!(matches!(
        f.rail.authorize(&garbage, &expected()).await,
        Err(PaymentError::Malformed(_))
    ));
    assert_eq!(f.devnet.usdc_balance(&f.gateway), 0, "nothing submitted");
    assert_eq!(f.devnet.usdc_balance(&f.buyer.pubkey()), FUNDS);
}

#[tokio::test]
async fn the_rust_payer_signs_what_the_rail_accepts_and_only_for_its_own_request() {
    use d402_payment::{Payer, Purchase, request_binding};
    let f = fixture().await;
    let body = json!({"input": {"n": 1}});
    let binding = request_binding(&body);
    let payer = d402_rail_solana::SolanaPayer::new(
        f.buyer.insecure_clone(),
        SolanaRpc::new(f.devnet.rpc_url()),
        d402_rail_solana::SolanaNetwork::Localnet,
        USDC_MINT,
        USDC_DECIMALS,
        PRICE,
    )
    .paying(d402_rail_solana::SolanaScheme::X402Exact);
    let challenge = f
        .rail
        .requirements_for(Amount::from_micros(PRICE), 300, &binding);
    assert!(payer.can_pay(&challenge));
    let purchase = Purchase {
        resource: None,
        body: &body,
        now: Timestamp::now(),
    };
    // A challenge whose memo names another request body is not signed.
    let other = f
        .rail
        .requirements_for(Amount::from_micros(PRICE), 300, BINDING);
    assert!(payer.pay(&other, &purchase).await.is_err());
    // Nor one without a fee payer.
    let mut no_fee_payer = challenge.clone();
    no_fee_payer.extra["feePayer"] = json!(null);
    assert!(payer.pay(&no_fee_payer, &purchase).await.is_err());
    // Above its cap it does not offer to pay.
    let mut dearer = challenge.clone();
    dearer.amount = (PRICE + 1).to_string();
    assert!(!payer.can_pay(&dearer));

    let payment = payer.pay(&challenge, &purchase).await.unwrap();
    let (name, header) = payer.header(&payment);
    assert_eq!(name, "payment-signature");
    assert_eq!(
        d402_payment::x402::decode_header::<PaymentPayload>(&header).unwrap(),
        payment
    );
    assert_eq!(
        f.devnet.usdc_balance(&f.gateway),
        0,
        "signed, not sent: the gateway submits it"
    );
    let expectation = Expectation {
        binding: &binding,
        ..expected()
    };
    let authorization = f.rail.authorize(&payment, &expectation).await.unwrap();
    assert_eq!(
        authorization.payer.to_string(),
        f.buyer.pubkey().to_string()
    );
    assert_eq!(f.devnet.usdc_balance(&f.gateway), PRICE);
    assert_eq!(f.devnet.usdc_balance(&f.buyer.pubkey()), FUNDS - PRICE);
}
