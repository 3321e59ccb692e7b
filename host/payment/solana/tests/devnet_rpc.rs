//! The production JSON-RPC client against the local SVM network: a USDC transfer with a
//! memo is signed, sent, confirmed and read back exactly as it was made; a replayed or
//! unfunded transaction is refused and moves nothing.

use std::time::Duration;

use d402_rail_solana::token::associated_token_address;
use d402_rail_solana::transfer::{self, TransactionContent, TransferOrder};
use d402_rail_solana::{Keypair, RpcError, SolanaRpc, USDC_DECIMALS, USDC_MINT};
use d402_solana_devnet::SolanaDevnet;
use solana_signer::Signer;

const FUNDS: u64 = 1_000_000;

#[tokio::test]
async fn a_usdc_transfer_with_a_memo_lands_once_and_reads_back_as_made() {
    let devnet = SolanaDevnet::start(0).await.unwrap();
    let buyer = Keypair::new();
    let gateway = Keypair::new().pubkey();
    devnet.fund_sol(&buyer.pubkey(), 1_000_000_000).unwrap();
    devnet.fund_usdc(&buyer.pubkey(), FUNDS).unwrap();
    let rpc = SolanaRpc::new(devnet.rpc_url());
    let order = TransferOrder {
        mint: USDC_MINT,
        decimals: USDC_DECIMALS,
        recipient: gateway,
        amount: 10_000,
        memo: Some("d402:sha256:00ff"),
    };
    let signature = transfer::send(&rpc, &buyer, &order, Duration::from_secs(10))
        .await
        .unwrap();

    let landed = rpc.transaction(&signature).await.unwrap().expect("landed");
    assert!(landed.err.is_none());
    assert!(landed.block_time.is_some());
    let content = TransactionContent::of(&landed);
    assert_eq!(content.memos, ["d402:sha256:00ff"]);
    let [paid] = content.transfers.as_slice() else {
        panic!("one transfer: {content:?}")
    };
    assert_eq!(
        (paid.amount, paid.mint, paid.authority, paid.decimals),
        (10_000, USDC_MINT, buyer.pubkey(), USDC_DECIMALS)
    );
    // The recipient's account was created by the real Associated Token Account program at
    // the address derived here: the program refuses any other.
    assert_eq!(
        paid.destination,
        associated_token_address(&gateway, &USDC_MINT)
    );
    assert_eq!(
        rpc.token_balance(&paid.destination).await.unwrap(),
        Some(10_000)
    );
    assert_eq!(devnet.usdc_balance(&buyer.pubkey()), FUNDS - 10_000);
    let status = rpc.signature_status(&signature).await.unwrap().unwrap();
    assert_eq!(
        (status.err, status.confirmation.as_str()),
        (None, "finalized")
    );

    // The same signed transaction again is refused; nothing moves twice.
    let again = transfer::sign(
        &buyer,
        &order,
        landed.transaction.message.recent_blockhash().to_owned(),
    );
    assert_eq!(again.signatures[0], signature, "the same bytes");
    let error = rpc.send_transaction(&again).await.unwrap_err();
    assert!(matches!(error, RpcError::Refused { .. }), "{error}");
    assert_eq!(devnet.usdc_balance(&gateway), 10_000);

    // More than the buyer holds: refused by preflight, nothing lands.
    let greedy = TransferOrder {
        amount: FUNDS,
        ..order
    };
    let before = devnet.transactions();
    assert!(
        transfer::send(&rpc, &buyer, &greedy, Duration::from_secs(10))
            .await
            .is_err()
    );
    assert_eq!(devnet.transactions(), before);
    assert_eq!(devnet.usdc_balance(&gateway), 10_000);

    // Unknown signatures and accounts read as absent.
    let unknown = Keypair::new().sign_message(b"never sent");
    assert!(rpc.signature_status(&unknown).await.unwrap().is_none());
    assert!(rpc.transaction(&unknown).await.unwrap().is_none());
    assert_eq!(
        rpc.token_balance(&Keypair::new().pubkey()).await.unwrap(),
        None
    );
}
