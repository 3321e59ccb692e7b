//! The store keeps consumed payments and balances across a reopen (a restart).

use d402_node::NodeStore;
use d402_protocol::Amount;

#[test]
fn ledger_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.redb");
    {
        let store = NodeStore::open(&path).unwrap();
        store.credit("buyer", Amount::from_micros(500)).unwrap();
        store.credit("buyer", Amount::from_micros(250)).unwrap();
    }
    let store = NodeStore::open(&path).unwrap();
    assert_eq!(store.balance("buyer").unwrap().micros(), 750);
    assert_eq!(store.balance("nobody").unwrap().micros(), 0);
    assert!(store.running().unwrap().is_empty());
}
