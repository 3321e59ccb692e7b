// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

import {TestUsdc} from "../src/TestUsdc.sol";
import {IEip3009, TaskEscrowFactory} from "../src/TaskEscrow.sol";
import {TestBase, Vm} from "./Vm.sol";

/// Drives the factory with random funds, settlements, refunds, reclaims and time jumps.
contract EscrowHandler {
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));
    uint256 internal constant BUYER_KEY = 0xB0B;
    address internal constant OPERATOR = address(0x0AE);
    address public constant WORKER = address(0x111);
    address public constant CREATOR = address(0x222);

    TestUsdc public immutable token;
    TaskEscrowFactory public immutable factory;
    address public immutable buyer;
    TaskEscrowFactory.Terms[] internal escrows;
    uint256 internal nextSalt;
    /// Ghosts: the amounts of settled escrows, and the commission their settlements paid.
    uint256 public settledAmounts;
    uint256 public commissionPaid;

    constructor(TestUsdc token_, TaskEscrowFactory factory_) {
        token = token_;
        factory = factory_;
        buyer = vm.addr(BUYER_KEY);
    }

    function count() external view returns (uint256) {
        return escrows.length;
    }

    function terms(uint256 i) external view returns (TaskEscrowFactory.Terms memory) {
        return escrows[i];
    }

    function fund(uint256 amount, uint256 lifetime) external {
        amount = 1 + amount % 50_000;
        TaskEscrowFactory.Terms memory t = TaskEscrowFactory.Terms({
            token: IEip3009(address(token)),
            amount: amount,
            operator: OPERATOR,
            deadline: uint64(block.timestamp + 1 + lifetime % 10_000),
            maxCommissionBps: 2000,
            salt: bytes32(++nextSalt)
        });
        if (token.balanceOf(buyer) < amount) return;
        bytes32 nonce = t.salt;
        bytes32 structHash = keccak256(
            abi.encode(
                token.TRANSFER_WITH_AUTHORIZATION_TYPEHASH(),
                buyer,
                factory.escrowOf(t),
                amount,
                0,
                block.timestamp + 100_000,
                nonce
            )
        );
        (uint8 v, bytes32 r, bytes32 s) =
            vm.sign(BUYER_KEY, keccak256(abi.encodePacked("\x19\x01", token.DOMAIN_SEPARATOR(), structHash)));
        factory.fund(t, buyer, 0, block.timestamp + 100_000, nonce, abi.encodePacked(r, s, v));
        escrows.push(t);
    }

    function settle(uint256 i, uint256 worker, uint256 commission) external {
        if (escrows.length == 0) return;
        TaskEscrowFactory.Terms memory t = escrows[i % escrows.length];
        TaskEscrowFactory.Payout[] memory list = new TaskEscrowFactory.Payout[](2);
        list[0] = TaskEscrowFactory.Payout({payee: WORKER, amount: worker % (t.amount + 1), commission: false});
        list[1] = TaskEscrowFactory.Payout({payee: CREATOR, amount: commission % (t.amount + 1), commission: true});
        vm.prank(OPERATOR);
        try factory.settle(t, list, bytes32(i)) {
            settledAmounts += t.amount;
            commissionPaid += list[1].amount;
        } catch {}
    }

    function refund(uint256 i) external {
        if (escrows.length == 0) return;
        vm.prank(OPERATOR);
        try factory.refund(escrows[i % escrows.length]) {} catch {}
    }

    function reclaim(uint256 i) external {
        if (escrows.length == 0) return;
        try factory.reclaim(escrows[i % escrows.length]) {} catch {}
    }

    function wait(uint256 seconds_) external {
        vm.warp(block.timestamp + seconds_ % 5_000);
    }
}

contract TaskEscrowInvariantTest is TestBase {
    uint256 internal constant SUPPLY = 10_000_000;
    TestUsdc internal token;
    TaskEscrowFactory internal factory;
    EscrowHandler internal handler;

    function setUp() public {
        vm.warp(1_000_000);
        token = new TestUsdc();
        factory = new TaskEscrowFactory();
        handler = new EscrowHandler(token, factory);
        token.mint(handler.buyer(), SUPPLY);
    }

    /// Forge fuzzes calls to these contracts only.
    function targetContracts() public view returns (address[] memory targets) {
        targets = new address[](1);
        targets[0] = address(handler);
    }

    /// An open escrow holds exactly its amount; a closed one holds nothing.
    function invariant_escrows_hold_their_amount_until_closed_and_nothing_after() public view {
        for (uint256 i; i < handler.count(); ++i) {
            TaskEscrowFactory.Terms memory t = handler.terms(i);
            address escrow = factory.escrowOf(t);
            TaskEscrowFactory.Stage stage = factory.stageOf(escrow);
            uint256 held = token.balanceOf(escrow);
            if (stage == TaskEscrowFactory.Stage.Funded) {
                assertEq(held, t.amount, "an open escrow holds its amount");
            } else {
                assertEq(held, 0, "a closed escrow is empty");
            }
        }
    }

    /// Nothing is created or lost: the payer, the payees and the open escrows hold the supply.
    function invariant_money_is_conserved() public view {
        uint256 held;
        for (uint256 i; i < handler.count(); ++i) {
            held += token.balanceOf(factory.escrowOf(handler.terms(i)));
        }
        assertEq(
            token.balanceOf(handler.buyer()) + token.balanceOf(handler.WORKER()) + token.balanceOf(handler.CREATOR())
                + held,
            SUPPLY,
            "conserved"
        );
    }

    /// Commissions never exceed the terms' cap (20% here) of what was settled.
    function invariant_commissions_stay_within_the_cap() public view {
        assertEq(token.balanceOf(handler.CREATOR()), handler.commissionPaid(), "paid as recorded");
        assertTrue(handler.commissionPaid() * 10_000 <= handler.settledAmounts() * 2000, "within the cap");
    }
}
