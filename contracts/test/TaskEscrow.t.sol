// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

import {TestUsdc} from "../src/TestUsdc.sol";
import {IEip3009, TaskEscrowFactory} from "../src/TaskEscrow.sol";
import {TestBase} from "./Vm.sol";

contract TaskEscrowTest is TestBase {
    TestUsdc internal token;
    TaskEscrowFactory internal factory;
    uint256 internal constant BUYER_KEY = 0xB0B;
    address internal buyer;
    address internal constant OPERATOR = address(0x0AE);
    address internal constant WORKER = address(0x111);
    address internal constant CREATOR = address(0x222);
    uint256 internal constant AMOUNT = 10_000;

    function setUp() public {
        token = new TestUsdc();
        factory = new TaskEscrowFactory();
        buyer = vm.addr(BUYER_KEY);
        token.mint(buyer, 1_000_000);
        vm.warp(1_000_000);
    }

    function terms(bytes32 salt) internal view returns (TaskEscrowFactory.Terms memory) {
        return TaskEscrowFactory.Terms({
            token: IEip3009(address(token)),
            amount: AMOUNT,
            operator: OPERATOR,
            deadline: 2_000_000,
            maxCommissionBps: 2000,
            salt: salt
        });
    }

    /// Funds the escrow of `t` with the buyer's EIP-3009 authorization to its address.
    function fund(TaskEscrowFactory.Terms memory t) internal returns (address escrow) {
        address to = factory.escrowOf(t);
        bytes32 nonce = keccak256(abi.encode(t.salt));
        bytes32 structHash = keccak256(
            abi.encode(token.TRANSFER_WITH_AUTHORIZATION_TYPEHASH(), buyer, to, t.amount, 0, 1_500_000, nonce)
        );
        (uint8 v, bytes32 r, bytes32 s) =
            vm.sign(BUYER_KEY, keccak256(abi.encodePacked("\x19\x01", token.DOMAIN_SEPARATOR(), structHash)));
        escrow = factory.fund(t, buyer, 0, 1_500_000, nonce, abi.encodePacked(r, s, v));
        assertTrue(escrow == to, "funded at the address known in advance");
    }

    function payouts(uint256 worker, uint256 commission)
        internal
        pure
        returns (TaskEscrowFactory.Payout[] memory list)
    {
        list = new TaskEscrowFactory.Payout[](2);
        list[0] = TaskEscrowFactory.Payout({payee: WORKER, amount: worker, commission: false});
        list[1] = TaskEscrowFactory.Payout({payee: CREATOR, amount: commission, commission: true});
    }

    function test_funding_records_the_payer_and_holds_the_amount() public {
        address escrow = fund(terms("a"));
        assertEq(token.balanceOf(escrow), AMOUNT, "held");
        assertTrue(factory.payerOf(escrow) == buyer, "payer recorded on chain");
        vm.expectRevert(
            abi.encodeWithSelector(TaskEscrowFactory.WrongStage.selector, TaskEscrowFactory.Stage.Funded)
        );
        factory.fund(terms("a"), buyer, 0, 1_500_000, bytes32(0), "");
    }

    function test_settlement_pays_the_split_and_returns_the_rest_once() public {
        TaskEscrowFactory.Terms memory t = terms("b");
        address escrow = fund(t);
        vm.prank(OPERATOR);
        factory.settle(t, payouts(7_000, 1_000), keccak256("receipt"));
        assertEq(token.balanceOf(WORKER), 7_000, "worker");
        assertEq(token.balanceOf(CREATOR), 1_000, "creator");
        assertEq(token.balanceOf(buyer), 1_000_000 - 8_000, "remainder back to the payer");
        assertEq(token.balanceOf(escrow), 0, "nothing stuck");
        vm.prank(OPERATOR);
        vm.expectRevert(
            abi.encodeWithSelector(TaskEscrowFactory.WrongStage.selector, TaskEscrowFactory.Stage.Closed)
        );
        factory.refund(t);
        vm.warp(3_000_000);
        vm.expectRevert(
            abi.encodeWithSelector(TaskEscrowFactory.WrongStage.selector, TaskEscrowFactory.Stage.Closed)
        );
        factory.reclaim(t);
    }

    function test_only_the_operator_settles_within_the_cap_and_the_amount() public {
        TaskEscrowFactory.Terms memory t = terms("c");
        fund(t);
        vm.expectRevert(TaskEscrowFactory.NotOperator.selector);
        factory.settle(t, payouts(1, 0), bytes32(0));
        vm.prank(OPERATOR);
        vm.expectRevert(abi.encodeWithSelector(TaskEscrowFactory.CommissionAboveCap.selector, 2_001, 2_000));
        factory.settle(t, payouts(1, 2_001), bytes32(0));
        vm.prank(OPERATOR);
        vm.expectRevert(abi.encodeWithSelector(TaskEscrowFactory.OverPaid.selector, 10_001, AMOUNT));
        factory.settle(t, payouts(8_001, 2_000), bytes32(0));
        vm.warp(2_000_000);
        vm.prank(OPERATOR);
        vm.expectRevert(TaskEscrowFactory.DeadlinePassed.selector);
        factory.settle(t, payouts(1, 0), bytes32(0));
    }

    function test_anyone_reclaims_for_the_payer_after_the_deadline_and_the_operator_refunds() public {
        TaskEscrowFactory.Terms memory t = terms("d");
        fund(t);
        vm.expectRevert(TaskEscrowFactory.DeadlineNotReached.selector);
        factory.reclaim(t);
        vm.warp(2_000_000);
        vm.prank(address(0xBAD));
        factory.reclaim(t);
        assertEq(token.balanceOf(buyer), 1_000_000, "made whole");
        TaskEscrowFactory.Terms memory u = terms("e");
        vm.warp(1_000_000);
        fund(u);
        vm.prank(OPERATOR);
        factory.refund(u);
        assertEq(token.balanceOf(buyer), 1_000_000, "made whole again");
    }

    /// Whatever the split, either it reverts and the escrow still holds everything, or the
    /// payees and the payer together get exactly the amount and the escrow is empty.
    function testFuzz_a_settlement_never_pays_more_than_the_deposit(uint256 worker, uint256 commission) public {
        worker = worker % 20_000;
        commission = commission % 5_000;
        TaskEscrowFactory.Terms memory t = terms(keccak256(abi.encode(worker, commission)));
        address escrow = fund(t);
        vm.prank(OPERATOR);
        try factory.settle(t, payouts(worker, commission), bytes32(0)) {
            assertEq(
                token.balanceOf(WORKER) + token.balanceOf(CREATOR) + token.balanceOf(buyer),
                1_000_000,
                "conserved"
            );
            assertEq(token.balanceOf(escrow), 0, "emptied");
            assertTrue(worker + commission <= AMOUNT && commission <= AMOUNT / 5, "only valid splits pass");
        } catch {
            assertEq(token.balanceOf(escrow), AMOUNT, "still held");
            assertTrue(worker + commission > AMOUNT || commission > AMOUNT / 5, "only invalid splits fail");
        }
    }
}
