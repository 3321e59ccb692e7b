//! The x402 EVM rail against a real local chain: anvil with the EIP-3009 test token at the
//! Base USDC address. Each attack is refused before anything moves; an accepted payment
//! settles exactly once, however often capture is called.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use d402_payment::x402::{PaymentPayload, Resource, X402_VERSION};
use d402_payment::{Expectation, Payer, PaymentError, PaymentRail, Purchase, RailError};
use d402_protocol::{Amount, Refund, Timestamp};
use d402_rail_x402_evm::devchain::DevChain;
use d402_rail_x402_evm::{
    AuthorizationTerms, BASE_USDC, Chain, EvmNetwork, EvmPayer, ExactEvmPayload, Facilitator,
    GasSigner, PrivateKeySigner, RailConfig, TokenDomain, USDC_DOMAIN_NAME, USDC_DOMAIN_VERSION,
    X402EvmRail,
};
use serde_json::json;

const PRICE: u64 = 10_000;
const FUNDS: u64 = 1_000_000;

struct Fixture {
    chain: DevChain,
    rail: X402EvmRail,
    buyer: PrivateKeySigner,
    pay_to: Address,
    gas: Address,
}

async fn fixture() -> Fixture {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..");
    let anvil = DevChain::anvil_path(&root).expect("anvil");
    let chain = DevChain::start(&anvil, 8453, 0).expect("anvil starts");
    chain.install_test_usdc(BASE_USDC).await.unwrap();
    let buyer = PrivateKeySigner::random();
    chain.mint(BASE_USDC, buyer.address(), FUNDS).await.unwrap();
    let pay_to = PrivateKeySigner::random().address();
    let gas_key = chain.account(1);
    let gas = gas_key.address();
    let config = RailConfig::base_usdc(pay_to);
    let reader = Chain::connect(chain.rpc_url(), BASE_USDC);
    let facilitator = Facilitator::Builtin(Arc::new(GasSigner::new(
        gas_key,
        chain.rpc_url(),
        BASE_USDC,
    )));
    let rail = X402EvmRail::new(config, reader, facilitator);
    Fixture {
        chain,
        rail,
        buyer,
        pay_to,
        gas,
    }
}

fn now_secs() -> u64 {
    Timestamp::now().unix_millis() / 1000
}

fn domain() -> TokenDomain {
    TokenDomain {
        name: USDC_DOMAIN_NAME.into(),
        version: USDC_DOMAIN_VERSION.into(),
        chain_id: 8453,
        token: BASE_USDC,
    }
}

impl Fixture {
    fn terms(&self) -> AuthorizationTerms {
        AuthorizationTerms {
            from: self.buyer.address(),
            to: self.pay_to,
            value: U256::from(PRICE),
            valid_after: U256::from(now_secs() - 600),
            valid_before: U256::from(now_secs() + 300),
            nonce: B256::from(rand::random::<[u8; 32]>()),
        }
    }

    /// A payment document for `terms` signed by `key` under `domain`.
    fn payment(
        &self,
        terms: AuthorizationTerms,
        domain: &TokenDomain,
        key: &PrivateKeySigner,
    ) -> PaymentPayload {
        let signature = terms.sign(domain, key).unwrap();
        PaymentPayload {
            x402_version: X402_VERSION,
            resource: None,
            accepted: self.rail.requirements(Amount::from_micros(PRICE), 300),
            payload: serde_json::to_value(ExactEvmPayload {
                signature,
                authorization: terms,
            })
            .unwrap(),
            extensions: Default::default(),
        }
    }

    fn good(&self) -> PaymentPayload {
        self.payment(self.terms(), &domain(), &self.buyer)
    }

    async fn authorize(
        &self,
        payment: &PaymentPayload,
    ) -> Result<d402_payment::Authorization, PaymentError> {
        let expected = Expectation {
            price: Amount::from_micros(PRICE),
            binding: "sha256:unused",
            now: Timestamp::now(),
            max_timeout_seconds: 300,
        };
        self.rail.authorize(payment, &expected).await
    }

    async fn balances(&self) -> (u64, u64) {
        (
            self.chain
                .balance(BASE_USDC, self.buyer.address())
                .await
                .unwrap(),
            self.chain.balance(BASE_USDC, self.pay_to).await.unwrap(),
        )
    }
}

#[tokio::test]
async fn an_accepted_payment_settles_once_however_often_capture_is_called() {
    let f = fixture().await;
    let payer = EvmPayer::new(
        f.buyer.clone(),
        vec![(EvmNetwork::BASE, BASE_USDC)],
        1_000_000,
    );
    let requirements = f.rail.requirements(Amount::from_micros(PRICE), 300);
    assert!(payer.can_pay(&requirements));
    let body = json!({"input": 1});
    let resource = Resource {
        url: "http://127.0.0.1/tasks".into(),
        description: None,
        mime_type: None,
    };
    let purchase = Purchase {
        resource: Some(&resource),
        body: &body,
        now: Timestamp::now(),
    };
    let payment = payer.pay(&requirements, &purchase).await.unwrap();
    let authorization = f.authorize(&payment).await.unwrap();
    assert_eq!(authorization.amount, Amount::from_micros(PRICE));
    assert_eq!(
        authorization.payer.to_string(),
        f.buyer.address().to_string().to_lowercase()
    );
    assert_eq!(f.balances().await, (FUNDS, 0), "authorize moves nothing");

    let first = f.rail.capture(&authorization, &[]).await.unwrap();
    let transaction = first.reference.clone().expect("a transaction hash");
    assert_eq!(f.balances().await, (FUNDS - PRICE, PRICE));
    let gas_nonce = f.chain.nonce(f.gas).await.unwrap();

    // A second capture (a retry, a restart) finds the transfer instead of sending one.
    let again = f.rail.capture(&authorization, &[]).await.unwrap();
    assert_eq!(again.reference.as_deref(), Some(transaction.as_str()));
    assert_eq!(f.balances().await, (FUNDS - PRICE, PRICE));
    assert_eq!(
        f.chain.nonce(f.gas).await.unwrap(),
        gas_nonce,
        "nothing sent again"
    );

    // The used authorization no longer authorizes anything.
    assert_eq!(
        f.authorize(&payment).await.unwrap_err(),
        PaymentError::AlreadyUsed
    );
}

#[tokio::test]
async fn every_attack_is_refused_before_anything_moves() {
    let f = fixture().await;
    let stranger = PrivateKeySigner::random();
    let poor = PrivateKeySigner::random();
    f.chain
        .mint(BASE_USDC, poor.address(), PRICE - 1)
        .await
        .unwrap();
    let used = f.good();
    f.rail
        .capture(&f.authorize(&used).await.unwrap(), &[])
        .await
        .unwrap();
    let before = f.balances().await;

    let mut wrong_asset = f.good();
    wrong_asset.accepted.asset = Address::repeat_byte(9).to_string();
    let mut unknown_network = f.good();
    unknown_network.accepted.network = "eip155:1".into();
    let mut malformed = f.good();
    malformed.payload = json!({"signature": "0x00", "authorization": {"from": "nobody"}});
    let mut high_s = f.good();
    let mut signature = high_s.payload["signature"].as_str().unwrap().to_string();
    signature.replace_range(66..68, "ff");
    high_s.payload["signature"] = signature.into();

    let cases: Vec<(&str, PaymentPayload, &str)> = vec![
        (
            "forged signature",
            f.payment(f.terms(), &domain(), &stranger),
            "invalid_signature",
        ),
        (
            "wrong chain id",
            f.payment(
                f.terms(),
                &TokenDomain {
                    chain_id: 84532,
                    ..domain()
                },
                &f.buyer,
            ),
            "invalid_signature",
        ),
        (
            "wrong EIP-712 name",
            f.payment(
                f.terms(),
                &TokenDomain {
                    name: "USDC".into(),
                    ..domain()
                },
                &f.buyer,
            ),
            "invalid_signature",
        ),
        (
            "to is not payTo",
            f.payment(
                AuthorizationTerms {
                    to: stranger.address(),
                    ..f.terms()
                },
                &domain(),
                &f.buyer,
            ),
            "wrong_payee",
        ),
        (
            "value below price",
            f.payment(
                AuthorizationTerms {
                    value: U256::from(PRICE - 1),
                    ..f.terms()
                },
                &domain(),
                &f.buyer,
            ),
            "underpaid",
        ),
        (
            "expired",
            f.payment(
                AuthorizationTerms {
                    valid_before: U256::from(now_secs() - 1),
                    ..f.terms()
                },
                &domain(),
                &f.buyer,
            ),
            "payment_expired",
        ),
        (
            "too little time left to settle",
            f.payment(
                AuthorizationTerms {
                    valid_before: U256::from(now_secs() + 5),
                    ..f.terms()
                },
                &domain(),
                &f.buyer,
            ),
            "payment_expired",
        ),
        (
            "not yet valid",
            f.payment(
                AuthorizationTerms {
                    valid_after: U256::from(now_secs() + 200),
                    ..f.terms()
                },
                &domain(),
                &f.buyer,
            ),
            "payment_expired",
        ),
        (
            "valid for longer than offered",
            f.payment(
                AuthorizationTerms {
                    valid_before: U256::from(now_secs() + 3600),
                    ..f.terms()
                },
                &domain(),
                &f.buyer,
            ),
            "payment_expired",
        ),
        ("nonce used on chain", used, "payment_already_used"),
        (
            "insufficient balance",
            f.payment(
                AuthorizationTerms {
                    from: poor.address(),
                    ..f.terms()
                },
                &domain(),
                &poor,
            ),
            "insufficient_funds",
        ),
        ("wrong asset", wrong_asset, "wrong_asset"),
        ("unknown network", unknown_network, "unsupported_network"),
        ("malformed payload", malformed, "malformed_payment"),
        ("malleable signature", high_s, "malformed_payment"),
    ];
    for (name, payment, code) in cases {
        let error = f.authorize(&payment).await.expect_err(name);
        assert_eq!(error.code(), code, "{name}: {error}");
    }
    assert_eq!(f.balances().await, before, "nothing moved");
}

#[tokio::test]
async fn settlements_from_one_gas_key_do_not_collide_and_voids_move_nothing() {
    let f = fixture().await;
    let mut authorizations = Vec::new();
    for _ in 0..8 {
        authorizations.push(f.authorize(&f.good()).await.unwrap());
    }
    let voided = authorizations.pop().unwrap();
    let refund = Refund {
        account: voided.payer.to_string(),
        amount: voided.amount,
        reason: "rejected".into(),
        transaction: None,
    };
    assert_eq!(f.rail.void(&voided, &refund).await.unwrap().reference, None);
    let captures = authorizations.iter().map(|a| f.rail.capture(a, &[]));
    let results = futures_util::future::join_all(captures).await;
    let mut transactions: Vec<String> = results
        .into_iter()
        .map(|r| r.unwrap().reference.unwrap())
        .collect();
    transactions.sort();
    transactions.dedup();
    assert_eq!(transactions.len(), 7, "seven distinct transactions");
    assert_eq!(f.balances().await, (FUNDS - 7 * PRICE, 7 * PRICE));
}

#[tokio::test]
async fn an_authorization_that_expired_or_was_used_elsewhere_is_a_final_failure() {
    let f = fixture().await;
    // Used elsewhere: the same nonce signed for another payee and spent there first.
    let terms = f.terms();
    let ours = f.payment(terms.clone(), &domain(), &f.buyer);
    let authorization = f.authorize(&ours).await.unwrap();
    let other_payee = PrivateKeySigner::random().address();
    let elsewhere = ExactEvmPayload {
        signature: AuthorizationTerms {
            to: other_payee,
            ..terms.clone()
        }
        .sign(&domain(), &f.buyer)
        .unwrap(),
        authorization: AuthorizationTerms {
            to: other_payee,
            ..terms
        },
    };
    let gas = GasSigner::new(f.chain.account(2), f.chain.rpc_url(), BASE_USDC);
    gas.submit(&elsewhere).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let error = f.rail.capture(&authorization, &[]).await.unwrap_err();
    assert!(matches!(error, RailError::Failed(_)), "{error}");
    assert_eq!(f.chain.balance(BASE_USDC, f.pay_to).await.unwrap(), 0);

    // Expired before settlement: nothing is sent, the buyer is not charged.
    let mut expired = f.authorize(&f.good()).await.unwrap();
    let mut proof: ExactEvmPayload =
        serde_json::from_value(expired.proof["payload"].clone()).unwrap();
    proof.authorization.valid_before = U256::from(now_secs() - 1);
    expired.proof["payload"] = serde_json::to_value(proof).unwrap();
    let nonce = f.chain.nonce(f.gas).await.unwrap();
    let error = f.rail.capture(&expired, &[]).await.unwrap_err();
    assert!(matches!(error, RailError::Failed(_)), "{error}");
    assert_eq!(f.chain.nonce(f.gas).await.unwrap(), nonce, "nothing sent");
}
