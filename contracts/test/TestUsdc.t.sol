// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

import {TestUsdc} from "../src/TestUsdc.sol";
import {TestBase} from "./Vm.sol";

contract TestUsdcTest is TestBase {
    TestUsdc internal token;
    uint256 internal constant PAYER_KEY = 0xA11CE;
    address internal payer;
    address internal constant PAYEE = address(0xB0B);

    function setUp() public {
        token = new TestUsdc();
        payer = vm.addr(PAYER_KEY);
        token.mint(payer, 1_000_000);
        vm.warp(1_000_000);
    }

    function sign(uint256 key, address from, address to, uint256 value, uint256 validAfter, uint256 validBefore, bytes32 nonce)
        internal
        view
        returns (bytes memory)
    {
        bytes32 structHash = keccak256(
            abi.encode(token.TRANSFER_WITH_AUTHORIZATION_TYPEHASH(), from, to, value, validAfter, validBefore, nonce)
        );
        bytes32 digest = keccak256(abi.encodePacked("\x19\x01", token.DOMAIN_SEPARATOR(), structHash));
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, digest);
        return abi.encodePacked(r, s, v);
    }

    function test_an_authorization_moves_the_value_once() public {
        bytes memory signature = sign(PAYER_KEY, payer, PAYEE, 10_000, 0, 2_000_000, bytes32(uint256(1)));
        token.transferWithAuthorization(payer, PAYEE, 10_000, 0, 2_000_000, bytes32(uint256(1)), signature);
        assertEq(token.balanceOf(PAYEE), 10_000, "payee credited");
        assertEq(token.balanceOf(payer), 990_000, "payer debited");
        assertTrue(token.authorizationState(payer, bytes32(uint256(1))), "nonce used");
        vm.expectRevert(abi.encodeWithSelector(TestUsdc.AuthorizationAlreadyUsed.selector, payer, bytes32(uint256(1))));
        token.transferWithAuthorization(payer, PAYEE, 10_000, 0, 2_000_000, bytes32(uint256(1)), signature);
    }

    function test_the_split_signature_form_verifies_too() public {
        bytes32 nonce = bytes32(uint256(7));
        bytes32 structHash = keccak256(
            abi.encode(token.TRANSFER_WITH_AUTHORIZATION_TYPEHASH(), payer, PAYEE, 5, 0, 2_000_000, nonce)
        );
        (uint8 v, bytes32 r, bytes32 s) =
            vm.sign(PAYER_KEY, keccak256(abi.encodePacked("\x19\x01", token.DOMAIN_SEPARATOR(), structHash)));
        token.transferWithAuthorization(payer, PAYEE, 5, 0, 2_000_000, nonce, v, r, s);
        assertEq(token.balanceOf(PAYEE), 5, "payee credited");
    }

    function test_a_window_outside_now_is_refused() public {
        bytes memory early = sign(PAYER_KEY, payer, PAYEE, 1, 1_000_000, 2_000_000, bytes32(uint256(2)));
        vm.expectRevert(abi.encodeWithSelector(TestUsdc.AuthorizationNotYetValid.selector, uint256(1_000_000)));
        token.transferWithAuthorization(payer, PAYEE, 1, 1_000_000, 2_000_000, bytes32(uint256(2)), early);
        bytes memory late = sign(PAYER_KEY, payer, PAYEE, 1, 0, 1_000_000, bytes32(uint256(3)));
        vm.expectRevert(abi.encodeWithSelector(TestUsdc.AuthorizationExpired.selector, uint256(1_000_000)));
        token.transferWithAuthorization(payer, PAYEE, 1, 0, 1_000_000, bytes32(uint256(3)), late);
    }

    function test_a_changed_term_or_another_signer_is_refused() public {
        bytes memory signature = sign(PAYER_KEY, payer, PAYEE, 100, 0, 2_000_000, bytes32(uint256(4)));
        vm.expectRevert(TestUsdc.InvalidSignature.selector);
        token.transferWithAuthorization(payer, PAYEE, 101, 0, 2_000_000, bytes32(uint256(4)), signature);
        bytes memory stranger = sign(0xBAD, payer, PAYEE, 100, 0, 2_000_000, bytes32(uint256(4)));
        vm.expectRevert(TestUsdc.InvalidSignature.selector);
        token.transferWithAuthorization(payer, PAYEE, 100, 0, 2_000_000, bytes32(uint256(4)), stranger);
        assertEq(token.balanceOf(PAYEE), 0, "nothing moved");
    }

    function test_receive_with_authorization_is_for_the_payee_only() public {
        bytes32 structHash = keccak256(
            abi.encode(token.RECEIVE_WITH_AUTHORIZATION_TYPEHASH(), payer, PAYEE, 9, 0, 2_000_000, bytes32(uint256(5)))
        );
        (uint8 v, bytes32 r, bytes32 s) =
            vm.sign(PAYER_KEY, keccak256(abi.encodePacked("\x19\x01", token.DOMAIN_SEPARATOR(), structHash)));
        bytes memory signature = abi.encodePacked(r, s, v);
        vm.expectRevert(abi.encodeWithSelector(TestUsdc.CallerMustBePayee.selector, address(this), PAYEE));
        token.receiveWithAuthorization(payer, PAYEE, 9, 0, 2_000_000, bytes32(uint256(5)), signature);
        vm.prank(PAYEE);
        token.receiveWithAuthorization(payer, PAYEE, 9, 0, 2_000_000, bytes32(uint256(5)), signature);
        assertEq(token.balanceOf(PAYEE), 9, "payee credited");
    }

    function test_a_cancelled_nonce_cannot_be_used() public {
        bytes32 nonce = bytes32(uint256(6));
        bytes32 structHash = keccak256(abi.encode(token.CANCEL_AUTHORIZATION_TYPEHASH(), payer, nonce));
        (uint8 v, bytes32 r, bytes32 s) =
            vm.sign(PAYER_KEY, keccak256(abi.encodePacked("\x19\x01", token.DOMAIN_SEPARATOR(), structHash)));
        token.cancelAuthorization(payer, nonce, abi.encodePacked(r, s, v));
        bytes memory signature = sign(PAYER_KEY, payer, PAYEE, 1, 0, 2_000_000, nonce);
        vm.expectRevert(abi.encodeWithSelector(TestUsdc.AuthorizationAlreadyUsed.selector, payer, nonce));
        token.transferWithAuthorization(payer, PAYEE, 1, 0, 2_000_000, nonce, signature);
    }

    /// Any value within the balance moves exactly once and supply is conserved.
    function testFuzz_authorized_transfers_conserve_supply(uint256 value, bytes32 nonce) public {
        value = value % 2_000_000;
        bytes memory signature = sign(PAYER_KEY, payer, PAYEE, value, 0, 2_000_000, nonce);
        if (value > 1_000_000) {
            vm.expectRevert(
                abi.encodeWithSelector(TestUsdc.InsufficientBalance.selector, payer, uint256(1_000_000), value)
            );
        }
        token.transferWithAuthorization(payer, PAYEE, value, 0, 2_000_000, nonce, signature);
        assertEq(token.balanceOf(payer) + token.balanceOf(PAYEE), 1_000_000, "supply conserved");
        assertTrue(token.authorizationState(payer, nonce) == (value <= 1_000_000), "nonce used iff moved");
    }
}
