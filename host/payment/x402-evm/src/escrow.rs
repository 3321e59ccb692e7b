//! The Base task escrow (`contracts/src/TaskEscrow.sol`, decision 0013) as the gateway sees
//! it: a task's terms and the escrow address they fix — computed here, without a chain call,
//! so it can be the `payTo` of the 402 challenge.

use alloy::primitives::{Address, B256, U256, keccak256};
use alloy::sol_types::SolValue;

/// Bindings of the committed escrow artifacts (generated).
#[allow(clippy::too_many_arguments)]
pub mod bindings {
    alloy::sol!(
        #[sol(rpc)]
        TaskEscrowFactory,
        "../../../contracts/artifacts/TaskEscrowFactory.json"
    );
    alloy::sol!(TaskVault, "../../../contracts/artifacts/TaskVault.json");
}

/// What a task's escrow is bound to (the contract's `Terms`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscrowTerms {
    /// The token escrowed.
    pub token: Address,
    /// How much, in atomic units.
    pub amount: u64,
    /// Who may settle or refund.
    pub operator: Address,
    /// Unix seconds after which anyone may return the funds to the payer.
    pub deadline: u64,
    /// The most the settlement may pay as creator commission, in basis points.
    pub max_commission_bps: u16,
    /// Unique per task.
    pub salt: B256,
}

impl EscrowTerms {
    /// The terms as the contract takes them.
    pub fn to_sol(&self) -> bindings::TaskEscrowFactory::Terms {
        bindings::TaskEscrowFactory::Terms {
            token: self.token,
            amount: U256::from(self.amount),
            operator: self.operator,
            deadline: self.deadline,
            maxCommissionBps: self.max_commission_bps,
            salt: self.salt,
        }
    }

    /// The escrow address `factory` gives these terms (CREATE2 of the task's vault, salted
    /// with the hash of the ABI-encoded terms).
    pub fn escrow_address(&self, factory: Address) -> Address {
        let salt = keccak256(self.to_sol().abi_encode());
        factory.create2(salt, keccak256(&bindings::TaskVault::BYTECODE))
    }
}
