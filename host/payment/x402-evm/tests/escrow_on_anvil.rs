//! The Base task escrow rail against a real local chain: anvil with the EIP-3009 test token
//! at the Base USDC address and the committed `TaskEscrowFactory`. A stock x402 payer funds
//! the escrow the challenge names; funds are held before work, split on chain after
//! acceptance or returned on failure, exactly once; every forged or misdirected payment is
//! refused with nothing moved; after the deadline anyone returns the funds to the payer.

use std::path::Path;
use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use d402_payment::x402::{PaymentPayload, PaymentRequirements};
use d402_payment::{
    Authorization, Expectation, Payer, PaymentError, PaymentRail, Purchase, RailError,
};
use d402_protocol::{Amount, Payout, PayoutReason, Refund, Timestamp};
use d402_rail_x402_evm::devchain::DevChain;
use d402_rail_x402_evm::escrow::{
    ESCROW_EXTRA, EscrowOffer, EscrowOperator, EscrowTerms, Stage, bindings,
};
use d402_rail_x402_evm::{
    BASE_USDC, EscrowConfig, EscrowRail, EvmNetwork, EvmPayer, ExactEvmPayload, PrivateKeySigner,
    TokenConfig,
};
use serde_json::json;

const PRICE: u64 = 10_000;
const FUNDS: u64 = 1_000_000;
const WINDOW: u64 = 600;

struct Fixture {
    chain: DevChain,
    rail: EscrowRail,
    buyer: PrivateKeySigner,
    factory: Address,
}

async fn fixture() -> Fixture {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..");
    let chain = DevChain::start(&DevChain::anvil_path(&root).expect("anvil"), 8453, 0).unwrap();
    chain.install_test_usdc(BASE_USDC).await.unwrap();
    let factory = chain.deploy_escrow_factory().await.unwrap();
    let buyer = PrivateKeySigner::random();
    chain.mint(BASE_USDC, buyer.address(), FUNDS).await.unwrap();
    let config = EscrowConfig {
        network: EvmNetwork::BASE,
        token: TokenConfig::base_usdc(),
        factory,
        settle_window_secs: WINDOW,
        max_commission_bps: 2000,
        receipt_timeout: Duration::from_secs(30),
    };
    let rail = EscrowRail::connect(config, chain.rpc_url(), chain.account(1));
    Fixture {
        chain,
        rail,
        buyer,
        factory,
    }
}

fn expected() -> Expectation<'static> {
    Expectation {
        price: Amount::from_micros(PRICE),
        binding: "sha256:unused",
        now: Timestamp::now(),
        max_timeout_seconds: 300,
    }
}

fn payout(address: Address, amount: u64, reason: PayoutReason) -> Payout {
    Payout {
        account: format!("account-of-{address}"),
        worker_id: None,
        amount: Amount::from_micros(amount),
        gross_amount: None,
        reason,
        rate_bps: None,
        rail: None,
        manifest_cid: None,
        registration_cid: None,
        publisher: None,
        namespace: None,
        address: Some(address.to_string()),
        transaction: None,
    }
}

fn refund() -> Refund {
    Refund {
        account: "buyer".into(),
        amount: Amount::from_micros(PRICE),
        reason: "rejected".into(),
        transaction: None,
    }
}

fn terms_of(authorization: &Authorization) -> EscrowTerms {
    serde_json::from_value(authorization.proof["terms"].clone()).unwrap()
}

impl Fixture {
    fn challenge(&self) -> PaymentRequirements {
        self.rail.requirements(Amount::from_micros(PRICE), 300)
    }

    /// What the stock EVM payer (it knows nothing of escrows) sends for `requirements`.
    async fn pay(&self, requirements: &PaymentRequirements) -> PaymentPayload {
        let payer = EvmPayer::new(
            self.buyer.clone(),
            vec![(EvmNetwork::BASE, BASE_USDC)],
            PRICE,
        );
        let body = json!({});
        let purchase = Purchase {
            resource: None,
            body: &body,
            now: Timestamp::now(),
        };
        payer.pay(requirements, &purchase).await.unwrap()
    }

    async fn balance(&self, account: Address) -> u64 {
        self.chain.balance(BASE_USDC, account).await.unwrap()
    }

    async fn funded(&self) -> (Authorization, Address) {
        let requirements = self.challenge();
        let payment = self.pay(&requirements).await;
        let authorization = self.rail.authorize(&payment, &expected()).await.unwrap();
        (authorization, requirements.pay_to.parse().unwrap())
    }

    /// An operator of the same factory with another key (not the terms' operator).
    fn stranger(&self, index: usize) -> EscrowOperator {
        EscrowOperator::new(
            self.chain.account(index),
            self.chain.rpc_url(),
            self.factory,
            BASE_USDC,
        )
    }
}

#[tokio::test]
async fn funds_are_escrowed_before_work_and_split_on_chain_exactly_once() {
    let f = fixture().await;
    let requirements = f.challenge();
    let escrow: Address = requirements.pay_to.parse().unwrap();
    let offer: EscrowOffer =
        serde_json::from_value(requirements.extra[ESCROW_EXTRA].clone()).unwrap();
    let terms = offer.terms(BASE_USDC).unwrap();
    let provider = alloy::providers::ProviderBuilder::new().connect_http(f.chain.rpc_url());
    let contract = bindings::TaskEscrowFactory::new(f.factory, &provider);
    assert_eq!(
        contract.escrowOf(terms.to_sol()).call().await.unwrap(),
        escrow,
        "a buyer can recompute payTo from the offered terms; the contract agrees"
    );
    assert_eq!(offer.operator, f.chain.account(1).address());

    let payment = f.pay(&requirements).await;
    let authorization = f.rail.authorize(&payment, &expected()).await.unwrap();
    assert_eq!(
        f.balance(escrow).await,
        PRICE,
        "held in escrow before any work"
    );
    assert_eq!(f.balance(f.buyer.address()).await, FUNDS - PRICE);
    assert_eq!(
        contract.payerOf(escrow).call().await.unwrap(),
        f.buyer.address(),
        "the payer is recorded on chain"
    );
    assert_eq!(
        authorization.payer.to_string(),
        f.buyer.address().to_string().to_lowercase()
    );
    let again = f.rail.authorize(&payment, &expected()).await.unwrap();
    assert_eq!(
        again.reference, authorization.reference,
        "a retry of the same payment finds its funding; nothing is sent twice"
    );
    assert_eq!(f.balance(f.buyer.address()).await, FUNDS - PRICE);

    let (worker, creator, validator) = (
        Address::repeat_byte(0xa1),
        Address::repeat_byte(0xc1),
        Address::repeat_byte(0xd1),
    );
    let payouts = [
        payout(worker, 7_000, PayoutReason::AcceptedResult),
        payout(creator, 2_000, PayoutReason::CreatorCommission),
        payout(validator, 1_000, PayoutReason::ValidatorFee),
    ];
    let settled = f.rail.capture(&authorization, &payouts).await.unwrap();
    let transaction = settled
        .reference
        .clone()
        .expect("the settlement transaction");
    assert_eq!(f.balance(worker).await, 7_000);
    assert_eq!(f.balance(creator).await, 2_000);
    assert_eq!(f.balance(validator).await, 1_000);
    assert_eq!(f.balance(escrow).await, 0, "the escrow is empty");
    assert_eq!(
        f.balance(f.buyer.address()).await,
        FUNDS - PRICE,
        "down by exactly the price"
    );

    let nonce = f.chain.nonce(f.chain.account(1).address()).await.unwrap();
    let repeated = f.rail.capture(&authorization, &payouts).await.unwrap();
    assert_eq!(repeated.reference.as_deref(), Some(transaction.as_str()));
    assert_eq!(
        f.chain.nonce(f.chain.account(1).address()).await.unwrap(),
        nonce,
        "a repeated capture reads the Settled event and sends nothing"
    );
    // Settling twice on chain is refused by the contract itself.
    let operator = f.rail.operator();
    assert!(
        operator
            .settle(&terms, Vec::new(), B256::ZERO)
            .await
            .is_err()
    );
    let error = f.rail.void(&authorization, &refund()).await.unwrap_err();
    assert!(
        matches!(error, RailError::Failed(_)),
        "no refund after a settlement: {error}"
    );
    assert_eq!(f.balance(f.buyer.address()).await, FUNDS - PRICE);
}

#[tokio::test]
async fn a_failed_task_is_refunded_on_chain_and_a_refunded_escrow_never_settles() {
    let f = fixture().await;
    let (authorization, escrow) = f.funded().await;
    let refunded = f.rail.void(&authorization, &refund()).await.unwrap();
    let transaction = refunded.reference.expect("the refund transaction");
    assert_eq!(
        f.balance(f.buyer.address()).await,
        FUNDS,
        "the buyer is whole"
    );
    assert_eq!(f.balance(escrow).await, 0);
    let again = f.rail.void(&authorization, &refund()).await.unwrap();
    assert_eq!(
        again.reference.as_deref(),
        Some(transaction.as_str()),
        "refunded once"
    );
    let payouts = [payout(
        Address::repeat_byte(0xa1),
        PRICE,
        PayoutReason::AcceptedResult,
    )];
    let error = f.rail.capture(&authorization, &payouts).await.unwrap_err();
    assert!(matches!(error, RailError::Failed(_)), "{error}");
    assert_eq!(f.balance(Address::repeat_byte(0xa1)).await, 0);
    assert_eq!(f.balance(f.buyer.address()).await, FUNDS);
}

#[tokio::test]
async fn forged_misdirected_and_overreaching_payments_are_refused_with_nothing_moved() {
    let f = fixture().await;
    let refused =
        async |payment: &PaymentPayload| f.rail.authorize(payment, &expected()).await.unwrap_err();

    // Terms the gateway never issued: an escrow of the same factory, salted by the buyer.
    let mut invented = f.challenge();
    let mut offer: EscrowOffer =
        serde_json::from_value(invented.extra[ESCROW_EXTRA].clone()).unwrap();
    offer.salt = B256::repeat_byte(7);
    let terms = offer.terms(BASE_USDC).unwrap();
    invented.pay_to = terms.escrow_address(f.factory).to_string();
    invented.extra[ESCROW_EXTRA] = serde_json::to_value(&offer).unwrap();
    let error = refused(&f.pay(&invented).await).await;
    assert!(matches!(error, PaymentError::WrongPayee(_)), "{error}");

    // Issued terms changed by the buyer (a later deadline, a higher commission cap).
    let mut changed = f.pay(&f.challenge()).await;
    changed.accepted.extra[ESCROW_EXTRA]["deadline"] = json!(u64::MAX / 2);
    assert!(matches!(
        refused(&changed).await,
        PaymentError::WrongPayee(_)
    ));
    let mut changed = f.pay(&f.challenge()).await;
    changed.accepted.extra[ESCROW_EXTRA]["maxCommissionBps"] = json!(10_000);
    assert!(matches!(
        refused(&changed).await,
        PaymentError::WrongPayee(_)
    ));

    // An authorization that funds another challenge's escrow.
    let mut misdirected = f.pay(&f.challenge()).await;
    misdirected.accepted = f.challenge();
    assert!(matches!(
        refused(&misdirected).await,
        PaymentError::WrongPayee(_)
    ));

    // A plain x402 requirement (no escrow terms), and an authorization above the escrow's
    // exact amount.
    let mut plain = f.pay(&f.challenge()).await;
    plain
        .accepted
        .extra
        .as_object_mut()
        .unwrap()
        .remove(ESCROW_EXTRA);
    assert!(matches!(refused(&plain).await, PaymentError::Malformed(_)));
    let mut dearer = f.challenge();
    dearer.amount = (PRICE * 2).to_string();
    let generous = EvmPayer::new(
        f.buyer.clone(),
        vec![(EvmNetwork::BASE, BASE_USDC)],
        PRICE * 2,
    );
    let body = json!({});
    let purchase = Purchase {
        resource: None,
        body: &body,
        now: Timestamp::now(),
    };
    let overpaid = generous.pay(&dearer, &purchase).await.unwrap();
    assert!(matches!(
        refused(&overpaid).await,
        PaymentError::Malformed(_)
    ));

    // A forged signature over a valid challenge.
    let mut forged = f.pay(&f.challenge()).await;
    let mut evm: ExactEvmPayload = forged.typed().unwrap();
    evm.authorization.from = Address::repeat_byte(0xee);
    forged.payload = serde_json::to_value(evm).unwrap();
    assert!(matches!(
        refused(&forged).await,
        PaymentError::BadSignature(_)
    ));
    assert_eq!(f.balance(f.buyer.address()).await, FUNDS, "nothing moved");

    // After funding: payouts above the deposit or a commission above the cap are refused,
    // and the escrow stays funded (a refund still returns everything).
    let (authorization, escrow) = f.funded().await;
    let worker = Address::repeat_byte(0xa1);
    let above_deposit = [payout(worker, PRICE + 1, PayoutReason::AcceptedResult)];
    let above_cap = [
        payout(worker, 7_000, PayoutReason::AcceptedResult),
        payout(
            Address::repeat_byte(0xc1),
            2_001,
            PayoutReason::CreatorCommission,
        ),
    ];
    for payouts in [&above_deposit[..], &above_cap[..]] {
        let error = f.rail.capture(&authorization, payouts).await.unwrap_err();
        assert!(matches!(error, RailError::Failed(_)), "{error}");
    }
    let terms = terms_of(&authorization);
    let operator = f.rail.operator();
    let sol = |payouts: &[Payout]| {
        payouts
            .iter()
            .map(|p| bindings::TaskEscrowFactory::Payout {
                payee: p.address.as_deref().unwrap().parse().unwrap(),
                amount: U256::from(p.amount.micros()),
                commission: p.reason == PayoutReason::CreatorCommission,
            })
            .collect::<Vec<_>>()
    };
    assert!(
        operator
            .settle(&terms, sol(&above_deposit), B256::ZERO)
            .await
            .is_err(),
        "the contract refuses it too"
    );
    assert!(
        operator
            .settle(&terms, sol(&above_cap), B256::ZERO)
            .await
            .is_err()
    );
    let stranger = f.stranger(5);
    assert!(
        stranger
            .settle(&terms, sol(&above_deposit[..0]), B256::ZERO)
            .await
            .is_err(),
        "only the operator settles"
    );
    assert!(
        stranger.refund(&terms).await.is_err(),
        "only the operator refunds before the deadline"
    );
    assert_eq!(operator.stage(&terms).await.unwrap(), Stage::Funded);
    assert_eq!(f.balance(escrow).await, PRICE);
    assert_eq!(f.balance(worker).await, 0);
}

#[tokio::test]
async fn after_the_deadline_anyone_returns_the_funds_to_the_payer() {
    let f = fixture().await;
    let (abandoned, escrow) = f.funded().await;
    let (late, _) = f.funded().await;
    assert_eq!(f.balance(f.buyer.address()).await, FUNDS - 2 * PRICE);
    f.chain.advance_time(300 + WINDOW + 60).await.unwrap();

    // The gateway vanished: a stranger reclaims for the payer.
    let terms = terms_of(&abandoned);
    let transaction = f.stranger(6).refund(&terms).await.unwrap();
    f.rail
        .operator()
        .chain()
        .wait_receipt(transaction, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(f.balance(escrow).await, 0);
    assert_eq!(f.balance(f.buyer.address()).await, FUNDS - PRICE);
    let payouts = [payout(
        Address::repeat_byte(0xa1),
        PRICE,
        PayoutReason::AcceptedResult,
    )];
    let error = f.rail.capture(&abandoned, &payouts).await.unwrap_err();
    assert!(matches!(error, RailError::Failed(_)), "{error}");

    // The gateway came back too late to settle: it returns the funds itself.
    let error = f.rail.capture(&late, &payouts).await.unwrap_err();
    assert!(
        matches!(error, RailError::Failed(ref m) if m.contains("returned to the payer")),
        "{error}"
    );
    assert_eq!(
        f.balance(f.buyer.address()).await,
        FUNDS,
        "the buyer is whole"
    );
    assert_eq!(f.balance(Address::repeat_byte(0xa1)).await, 0);
}
