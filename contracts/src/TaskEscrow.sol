// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

/// @notice The EIP-3009 surface the escrow uses.
interface IEip3009 {
    function transferWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        bytes calldata signature
    ) external;
    function transfer(address to, uint256 value) external returns (bool);
    function balanceOf(address account) external view returns (uint256);
}

/// @title TaskVault — holds one task's escrowed funds; only its factory moves them.
/// @dev Deployed by `TaskEscrowFactory` with CREATE2 at the address the task's terms
/// determine, so that address can be a 402 challenge's `payTo` before the vault exists.
contract TaskVault {
    address public immutable factory;

    error OnlyFactory();

    constructor() {
        factory = msg.sender;
    }

    /// @notice Sends `value` of `token` to `to`; the factory's call only.
    function pay(IEip3009 token, address to, uint256 value) external {
        if (msg.sender != factory) revert OnlyFactory();
        require(token.transfer(to, value), "transfer failed");
    }
}

/// @title TaskEscrowFactory — per-task escrows for paid d402 tasks.
/// @notice A task's terms fix its escrow address (`escrowOf`), so a gateway can name it as the
/// `payTo` of an ordinary x402 `exact` requirement. `fund` submits the buyer's EIP-3009
/// authorization to that address and records the payer in the same transaction. Then
/// exactly one of: `settle` by the operator before the deadline (payees, a commission within
/// the terms' cap, the remainder back to the payer), `refund` by the operator, or `reclaim`
/// by anyone after the deadline (to the recorded payer).
contract TaskEscrowFactory {
    /// @notice What a task's escrow is bound to.
    struct Terms {
        IEip3009 token;
        uint256 amount;
        address operator;
        uint64 deadline;
        uint16 maxCommissionBps;
        bytes32 salt;
    }

    /// @notice One payout of a settlement.
    struct Payout {
        address payee;
        uint256 amount;
        bool commission;
    }

    enum Stage {
        Unfunded,
        Funded,
        Closed
    }

    /// @notice Most payouts in one settlement.
    uint256 public constant MAX_PAYOUTS = 16;

    mapping(address => address) public payerOf;
    mapping(address => Stage) public stageOf;

    event Funded(bytes32 indexed salt, address indexed escrow, address indexed payer, uint256 amount);
    event Settled(bytes32 indexed salt, address indexed escrow, bytes32 receiptHash, uint256 paidOut, uint256 returned);
    event Refunded(bytes32 indexed salt, address indexed escrow, address indexed payer, uint256 amount);

    error WrongStage(Stage stage);
    error NotOperator();
    error DeadlinePassed();
    error DeadlineNotReached();
    error TooManyPayouts(uint256 count);
    error OverPaid(uint256 total, uint256 amount);
    error CommissionAboveCap(uint256 commission, uint256 cap);
    error ZeroPayee();

    /// @notice The escrow address of `terms`, known before anything is deployed.
    function escrowOf(Terms calldata terms) public view returns (address) {
        bytes32 hash = keccak256(
            abi.encodePacked(bytes1(0xff), address(this), keccak256(abi.encode(terms)), keccak256(type(TaskVault).creationCode))
        );
        return address(uint160(uint256(hash)));
    }

    /// @notice Moves the buyer's authorized `value` into the task's escrow and records `from`
    /// as its payer. Anyone may submit it; the authorization must pay exactly the terms' amount
    /// to the escrow address.
    function fund(
        Terms calldata terms,
        address from,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        bytes calldata signature
    ) external returns (address escrow) {
        escrow = escrowOf(terms);
        if (stageOf[escrow] != Stage.Unfunded) revert WrongStage(stageOf[escrow]);
        if (block.timestamp >= terms.deadline) revert DeadlinePassed();
        stageOf[escrow] = Stage.Funded;
        payerOf[escrow] = from;
        new TaskVault{salt: keccak256(abi.encode(terms))}();
        terms.token.transferWithAuthorization(from, escrow, terms.amount, validAfter, validBefore, nonce, signature);
        emit Funded(terms.salt, escrow, from, terms.amount);
    }

    /// @notice Pays `payouts` from the escrow and returns the rest to the payer; the operator's
    /// call, before the deadline, once.
    function settle(Terms calldata terms, Payout[] calldata payouts, bytes32 receiptHash) external {
        address escrow = _close(terms, true);
        if (payouts.length > MAX_PAYOUTS) revert TooManyPayouts(payouts.length);
        uint256 total;
        uint256 commission;
        for (uint256 i; i < payouts.length; ++i) {
            if (payouts[i].payee == address(0)) revert ZeroPayee();
            total += payouts[i].amount;
            if (payouts[i].commission) commission += payouts[i].amount;
        }
        if (total > terms.amount) revert OverPaid(total, terms.amount);
        uint256 cap = terms.amount * terms.maxCommissionBps / 10_000;
        if (commission > cap) revert CommissionAboveCap(commission, cap);
        for (uint256 i; i < payouts.length; ++i) {
            if (payouts[i].amount > 0) TaskVault(escrow).pay(terms.token, payouts[i].payee, payouts[i].amount);
        }
        uint256 returned = terms.amount - total;
        if (returned > 0) TaskVault(escrow).pay(terms.token, payerOf[escrow], returned);
        emit Settled(terms.salt, escrow, receiptHash, total, returned);
    }

    /// @notice Returns everything to the payer; the operator's call, once.
    function refund(Terms calldata terms) external {
        _refund(terms, _close(terms, false));
    }

    /// @notice Returns everything to the payer after the deadline; anyone's call, once.
    function reclaim(Terms calldata terms) external {
        if (block.timestamp < terms.deadline) revert DeadlineNotReached();
        address escrow = escrowOf(terms);
        if (stageOf[escrow] != Stage.Funded) revert WrongStage(stageOf[escrow]);
        stageOf[escrow] = Stage.Closed;
        _refund(terms, escrow);
    }

    /// @dev Checks the operator (and, for a settlement, the deadline) and closes the escrow
    /// before any token moves.
    function _close(Terms calldata terms, bool beforeDeadline) private returns (address escrow) {
        if (msg.sender != terms.operator) revert NotOperator();
        if (beforeDeadline && block.timestamp >= terms.deadline) revert DeadlinePassed();
        escrow = escrowOf(terms);
        if (stageOf[escrow] != Stage.Funded) revert WrongStage(stageOf[escrow]);
        stageOf[escrow] = Stage.Closed;
    }

    function _refund(Terms calldata terms, address escrow) private {
        address payer = payerOf[escrow];
        TaskVault(escrow).pay(terms.token, payer, terms.amount);
        emit Refunded(terms.salt, escrow, payer, terms.amount);
    }
}
