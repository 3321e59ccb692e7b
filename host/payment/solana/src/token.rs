//! The SPL Token, Associated Token Account and Memo programs as d402 uses them: their ids,
//! the instructions a USDC payment is made of (built and read back byte for byte as the
//! programs define them), token-account addresses, and the account layouts a local network
//! needs to hold a mint and balances.

use solana_address::Address;
use solana_instruction::{AccountMeta, Instruction};

/// The SPL Token program.
pub const TOKEN_PROGRAM: Address =
    Address::from_str_const("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA");
/// The Associated Token Account program.
pub const ASSOCIATED_TOKEN_PROGRAM: Address =
    Address::from_str_const("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL");
/// The Memo program (v2).
pub const MEMO_PROGRAM: Address =
    Address::from_str_const("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr");
/// The legacy Memo program (v1).
pub const MEMO_PROGRAM_V1: Address =
    Address::from_str_const("Memo1UhkJRfHyvLMcVucJwxXeuD728EqVDDwQDxFMNo");
/// The System program.
pub const SYSTEM_PROGRAM: Address = Address::from_str_const("11111111111111111111111111111111");

/// Size of an SPL mint account.
pub const MINT_LEN: usize = 82;
/// Size of an SPL token account.
pub const TOKEN_ACCOUNT_LEN: usize = 165;

/// `TransferChecked`'s instruction tag in the SPL Token program.
const TRANSFER_CHECKED: u8 = 12;

/// The associated token account of `owner` for `mint` (SPL Token).
pub fn associated_token_address(owner: &Address, mint: &Address) -> Address {
    Address::find_program_address(
        &[owner.as_ref(), TOKEN_PROGRAM.as_ref(), mint.as_ref()],
        &ASSOCIATED_TOKEN_PROGRAM,
    )
    .0
}

/// `TransferChecked` of `amount` (`decimals`) of `mint` from `source` to `destination`
/// token accounts, signed by `authority`.
pub fn transfer_checked(
    source: Address,
    mint: Address,
    destination: Address,
    authority: Address,
    amount: u64,
    decimals: u8,
) -> Instruction {
    let mut data = vec![TRANSFER_CHECKED];
    data.extend_from_slice(&amount.to_le_bytes());
    data.push(decimals);
    Instruction {
        program_id: TOKEN_PROGRAM,
        accounts: vec![
            AccountMeta::new(source, false),
            AccountMeta::new_readonly(mint, false),
            AccountMeta::new(destination, false),
            AccountMeta::new_readonly(authority, true),
        ],
        data,
    }
}

/// A memo (Memo program v2), signed by no one.
pub fn memo(text: &str) -> Instruction {
    Instruction {
        program_id: MEMO_PROGRAM,
        accounts: Vec::new(),
        data: text.as_bytes().to_vec(),
    }
}

/// Creates `owner`'s associated token account for `mint` unless it exists, paid by `payer`.
pub fn create_associated_token_account_idempotent(
    payer: Address,
    owner: Address,
    mint: Address,
) -> Instruction {
    Instruction {
        program_id: ASSOCIATED_TOKEN_PROGRAM,
        accounts: vec![
            AccountMeta::new(payer, true),
            AccountMeta::new(associated_token_address(&owner, &mint), false),
            AccountMeta::new_readonly(owner, false),
            AccountMeta::new_readonly(mint, false),
            AccountMeta::new_readonly(SYSTEM_PROGRAM, false),
            AccountMeta::new_readonly(TOKEN_PROGRAM, false),
        ],
        data: vec![1],
    }
}

/// A `TransferChecked` read back from a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferChecked {
    /// The paying token account.
    pub source: Address,
    /// The mint.
    pub mint: Address,
    /// The receiving token account.
    pub destination: Address,
    /// Who signed for the source.
    pub authority: Address,
    /// Atomic units.
    pub amount: u64,
    /// The mint's decimals as the instruction states them.
    pub decimals: u8,
}

impl TransferChecked {
    /// The transfer `data` encodes over `accounts` (the instruction's account keys in
    /// order), if it is an SPL Token `TransferChecked`.
    pub fn read(program: &Address, accounts: &[Address], data: &[u8]) -> Option<Self> {
        if *program != TOKEN_PROGRAM || data.len() != 10 || data[0] != TRANSFER_CHECKED {
            return None;
        }
        let [source, mint, destination, authority, ..] = accounts else {
            return None;
        };
        Some(Self {
            source: *source,
            mint: *mint,
            destination: *destination,
            authority: *authority,
            amount: u64::from_le_bytes(data[1..9].try_into().ok()?),
            decimals: data[9],
        })
    }
}

/// The text of a memo instruction (either Memo program), if `program` is one and the data
/// is UTF-8.
pub fn read_memo(program: &Address, data: &[u8]) -> Option<String> {
    if *program != MEMO_PROGRAM && *program != MEMO_PROGRAM_V1 {
        return None;
    }
    String::from_utf8(data.to_vec()).ok()
}

/// The bytes of an initialized SPL mint with `supply`, `decimals` and `authority` as its
/// mint authority (no freeze authority).
pub fn mint_data(authority: &Address, supply: u64, decimals: u8) -> Vec<u8> {
    let mut data = Vec::with_capacity(MINT_LEN);
    data.extend_from_slice(&1u32.to_le_bytes());
    data.extend_from_slice(authority.as_ref());
    data.extend_from_slice(&supply.to_le_bytes());
    data.push(decimals);
    data.push(1);
    data.extend_from_slice(&[0u8; 36]);
    data
}

/// The bytes of an initialized SPL token account of `mint` owned by `owner` holding
/// `amount`.
pub fn token_account_data(mint: &Address, owner: &Address, amount: u64) -> Vec<u8> {
    let mut data = Vec::with_capacity(TOKEN_ACCOUNT_LEN);
    data.extend_from_slice(mint.as_ref());
    data.extend_from_slice(owner.as_ref());
    data.extend_from_slice(&amount.to_le_bytes());
    data.extend_from_slice(&[0u8; 36]);
    data.push(1);
    data.extend_from_slice(&[0u8; 12]);
    data.extend_from_slice(&0u64.to_le_bytes());
    data.extend_from_slice(&[0u8; 36]);
    data
}

/// The mint, owner and amount of SPL token account `data`, if it is one.
pub fn read_token_account(data: &[u8]) -> Option<(Address, Address, u64)> {
    if data.len() != TOKEN_ACCOUNT_LEN {
        return None;
    }
    let address = |range: std::ops::Range<usize>| Address::try_from(&data[range]).ok();
    Some((
        address(0..32)?,
        address(32..64)?,
        u64::from_le_bytes(data[64..72].try_into().ok()?),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_have_the_programs_sizes_and_read_back() {
        let (mint, owner) = (
            Address::new_from_array([1; 32]),
            Address::new_from_array([2; 32]),
        );
        assert_eq!(mint_data(&owner, 5, 6).len(), MINT_LEN);
        let account = token_account_data(&mint, &owner, 42);
        assert_eq!(account.len(), TOKEN_ACCOUNT_LEN);
        assert_eq!(read_token_account(&account), Some((mint, owner, 42)));
        let ix = transfer_checked(owner, mint, owner, owner, 7, 6);
        let keys: Vec<Address> = ix.accounts.iter().map(|a| a.pubkey).collect();
        let read = TransferChecked::read(&ix.program_id, &keys, &ix.data).unwrap();
        assert_eq!((read.amount, read.decimals, read.mint), (7, 6, mint));
        assert_eq!(TransferChecked::read(&MEMO_PROGRAM, &keys, &ix.data), None);
        let note = memo("d402:sha256:00");
        assert_eq!(
            read_memo(&note.program_id, &note.data).as_deref(),
            Some("d402:sha256:00")
        );
    }
}
