"""Layer-1 envelope and account rules: chain id, signatures, nonces, fees, transfers, faucet.

Every rejection is checked by its stable `ChainError.code` and by a full snapshot of the state
before and after: a refused transaction changes nothing (no fee, no nonce, no new account).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from p2pchan.crypto.signing import SigningTag
from p2pchan.errors import ChainError
from p2pchan.l1.events import SecretRegistered
from p2pchan.l1.genesis import Allocation, GenesisSpec
from p2pchan.l1.state import ChainState
from p2pchan.l1.transactions import (
    FAUCET_ADDRESS,
    ChannelClose,
    ChannelDeposit,
    ChannelOpen,
    ChannelSettle,
    FaucetGrant,
    RegisterSecret,
    SignedTransaction,
    Transaction,
    Transfer,
    decode_transaction,
    encode_body,
    faucet_transaction,
    sign_transaction,
)
from p2pchan.types import U64_MAX, Address, ChainId
from tests.unit.chain_helpers import (
    ChainHarness,
    circulating,
    identity,
    lock,
    secret,
    secrethash,
    snapshot,
)

ALICE, BOB, CAROL = identity(1), identity(2), identity(3)


def funded(*, min_fee: int = 0, dev: bool = True) -> ChainHarness:
    return ChainHarness.create([(ALICE, 1000), (BOB, 500)], min_fee=min_fee, dev=dev)


def test_transfer_moves_funds_and_advances_the_nonce() -> None:
    harness = funded()
    assert harness.call(ALICE, Transfer(CAROL.node_id, 300)) == []
    assert harness.balance(ALICE) == 700
    assert harness.balance(CAROL) == 300
    assert harness.next_nonce(ALICE) == 1
    assert harness.next_nonce(CAROL) == 0
    harness.assert_conserved()


# -- chain id and signatures -------------------------------------------------------------


def test_transaction_for_another_chain_is_rejected() -> None:
    harness = funded()
    other = ChainHarness.create([(ALICE, 1000)], genesis_nonce=bytes([7]) * 32)
    assert other.chain_id != harness.chain_id
    tx = other.tx(ALICE, Transfer(BOB.node_id, 1))
    harness.reject_tx(tx, "wrong_chain")
    # The same call signed for the right chain goes through.
    harness.call(ALICE, Transfer(BOB.node_id, 1))
    assert harness.balance(BOB) == 501


def test_genesis_nonce_makes_chain_ids_distinct_with_identical_allocations() -> None:
    first = ChainHarness.create([(ALICE, 1000)], genesis_nonce=bytes(32))
    second = ChainHarness.create([(ALICE, 1000)], genesis_nonce=bytes([1]) * 32)
    assert first.chain_id != second.chain_id


def test_tampered_body_fails_the_signature_check() -> None:
    harness = funded()
    signed = sign_transaction(ALICE, harness.chain_id, 0, Transfer(CAROL.node_id, 10))
    tampered_body = signed.body.replace(CAROL.node_id, BOB.node_id)  # another recipient
    assert tampered_body != signed.body
    with pytest.raises(ChainError) as caught:
        decode_transaction(SignedTransaction(tampered_body, signed.signature))
    assert caught.value.code == "bad_signature"


def test_tampered_signature_is_rejected() -> None:
    harness = funded()
    signed = sign_transaction(ALICE, harness.chain_id, 0, Transfer(CAROL.node_id, 10))
    flipped = bytes([signed.signature[0] ^ 1]) + signed.signature[1:]
    with pytest.raises(ChainError) as caught:
        decode_transaction(SignedTransaction(signed.body, flipped))
    assert caught.value.code == "bad_signature"


def test_signature_by_another_key_is_rejected() -> None:
    """Bob signs a body that names Alice as sender: it must not spend Alice's funds."""
    harness = funded()
    body = sign_transaction(ALICE, harness.chain_id, 0, Transfer(BOB.node_id, 999)).body
    forged = SignedTransaction(body, BOB.sign(SigningTag.L1_TRANSACTION, body))
    with pytest.raises(ChainError) as caught:
        decode_transaction(forged)
    assert caught.value.code == "bad_signature"


def test_signature_for_another_domain_is_rejected() -> None:
    harness = funded()
    body = sign_transaction(ALICE, harness.chain_id, 0, Transfer(BOB.node_id, 1)).body
    wrong_tag = SignedTransaction(body, ALICE.sign(SigningTag.BALANCE_PROOF, body))
    with pytest.raises(ChainError) as caught:
        decode_transaction(wrong_tag)
    assert caught.value.code == "bad_signature"


def test_undecodable_body_is_malformed() -> None:
    with pytest.raises(ChainError) as caught:
        decode_transaction(SignedTransaction(b"\x93\x01\x02", bytes(64)))
    assert caught.value.code == "malformed"


def test_a_user_cannot_sign_a_faucet_grant() -> None:
    harness = funded()
    signed = sign_transaction(ALICE, harness.chain_id, 0, FaucetGrant(ALICE.node_id, 10**6))
    with pytest.raises(ChainError) as caught:
        decode_transaction(signed)
    assert caught.value.code == "malformed"
    assert harness.balance(ALICE) == 1000


# -- nonces --------------------------------------------------------------------------------


def test_replayed_transaction_is_rejected() -> None:
    harness = funded()
    tx = harness.tx(ALICE, Transfer(CAROL.node_id, 100))
    harness.apply(tx)
    error = harness.reject_tx(tx, "bad_nonce")
    assert "replayed" in error.message
    assert harness.balance(CAROL) == 100


def test_future_nonce_is_rejected_until_the_gap_is_filled() -> None:
    harness = funded()
    future = harness.tx(ALICE, Transfer(CAROL.node_id, 5), nonce=1)
    error = harness.reject_tx(future, "bad_nonce")
    assert "future" in error.message
    harness.call(ALICE, Transfer(CAROL.node_id, 7))  # nonce 0
    harness.apply(future)  # now nonce 1 is next
    assert harness.balance(CAROL) == 12
    assert harness.next_nonce(ALICE) == 2


def test_first_nonce_of_a_new_account_is_zero() -> None:
    harness = funded()
    harness.reject(CAROL, RegisterSecret(secret(1)), "bad_nonce", nonce=1)
    harness.call(CAROL, RegisterSecret(secret(1)), nonce=0)
    assert harness.next_nonce(CAROL) == 1


# -- fees --------------------------------------------------------------------------------


def test_fee_below_the_minimum_is_rejected() -> None:
    harness = funded(min_fee=3)
    harness.reject(ALICE, Transfer(BOB.node_id, 1), "fee_too_low", fee=2)
    harness.reject(ALICE, Transfer(BOB.node_id, 1), "fee_too_low", fee=0)


def test_fee_is_burned_and_conservation_counts_it() -> None:
    harness = funded(min_fee=3)
    harness.call(ALICE, Transfer(BOB.node_id, 100), fee=3)
    harness.call(BOB, Transfer(ALICE.node_id, 50), fee=10)  # above the minimum is fine
    assert harness.balance(ALICE) == 1000 - 100 - 3 + 50
    assert harness.balance(BOB) == 500 + 100 - 50 - 10
    assert harness.state.burned == 13
    assert harness.state.supply == 1500
    assert circulating(harness.state) == 1500 - 13


def test_fee_is_charged_on_a_successful_contract_call() -> None:
    harness = funded(min_fee=2)
    channel_id = harness.open(ALICE, BOB, deposits=(100, 0))
    assert harness.balance(ALICE) == 1000 - 2 - 100 - 2
    assert harness.state.burned == 4
    harness.assert_conserved()
    harness.call(ALICE, ChannelClose(channel_id, ()), height=1)
    harness.call(BOB, ChannelSettle(channel_id), height=22)
    assert harness.balance(ALICE) == 1000 - 6
    assert harness.balance(BOB) == 500 - 2
    assert harness.state.burned == 8
    harness.assert_conserved()


# -- overdrafts --------------------------------------------------------------------------


def test_transfer_above_balance_is_rejected() -> None:
    harness = funded()
    harness.reject(ALICE, Transfer(BOB.node_id, 1001), "insufficient_funds")
    harness.call(ALICE, Transfer(BOB.node_id, 1000))
    assert harness.balance(ALICE) == 0


def test_transfer_plus_fee_above_balance_is_rejected() -> None:
    harness = funded(min_fee=1)
    harness.reject(ALICE, Transfer(BOB.node_id, 1000), "insufficient_funds", fee=1)
    harness.call(ALICE, Transfer(BOB.node_id, 999), fee=1)
    assert harness.balance(ALICE) == 0
    harness.assert_conserved()


def test_fee_above_balance_is_rejected() -> None:
    harness = funded(min_fee=1)
    harness.reject(ALICE, RegisterSecret(secret(1)), "insufficient_funds", fee=1001)
    # An account that never held anything cannot pay a fee, and is not created by trying.
    harness.reject(CAROL, RegisterSecret(secret(1)), "insufficient_funds", fee=1)
    assert CAROL.node_id not in harness.state.accounts


def test_deposit_above_balance_is_rejected() -> None:
    harness = funded(min_fee=1)
    channel_id = harness.open(ALICE, BOB)
    # Alice has 999 left; a deposit of 999 plus the fee of 1 does not fit.
    harness.reject(ALICE, ChannelDeposit(channel_id, ALICE.node_id, 999), "insufficient_funds")
    harness.call(ALICE, ChannelDeposit(channel_id, ALICE.node_id, 998))
    assert harness.balance(ALICE) == 0


# -- recipients --------------------------------------------------------------------------


def test_transfer_to_the_faucet_address_is_rejected() -> None:
    harness = funded()
    harness.reject(ALICE, Transfer(FAUCET_ADDRESS, 1), "invalid_recipient")


def test_self_transfer_changes_only_the_nonce_and_the_fee() -> None:
    harness = funded(min_fee=2)
    harness.call(ALICE, Transfer(ALICE.node_id, 998), fee=2)
    assert harness.balance(ALICE) == 998
    assert harness.next_nonce(ALICE) == 1
    harness.reject(ALICE, Transfer(ALICE.node_id, 997), "insufficient_funds", fee=2)
    harness.assert_conserved()


def test_zero_transfer_to_a_new_account_is_allowed() -> None:
    harness = funded()
    harness.call(ALICE, Transfer(CAROL.node_id, 0))
    assert harness.balance(CAROL) == 0
    assert harness.next_nonce(ALICE) == 1


# -- faucet ------------------------------------------------------------------------------


def test_nobody_can_spend_from_the_faucet_address() -> None:
    """The faucet address is the all-zero key: no signature verifies for it."""
    harness = funded()
    harness.faucet(CAROL.node_id, 10)
    body = encode_body(harness.chain_id, FAUCET_ADDRESS, 0, 0, Transfer(ALICE.node_id, 1))
    for signature in (bytes(64), ALICE.sign(SigningTag.L1_TRANSACTION, body)):
        with pytest.raises(ChainError) as caught:
            decode_transaction(SignedTransaction(body, signature))
        assert caught.value.code == "bad_signature"


def test_faucet_grant_adds_to_supply_on_a_dev_chain() -> None:
    harness = funded()
    harness.faucet(CAROL.node_id, 250)
    harness.faucet(CAROL.node_id, 50)
    assert harness.balance(CAROL) == 300
    assert harness.state.supply == 1800
    assert harness.state.faucet_grants == 2
    harness.assert_conserved()


def test_faucet_is_refused_on_a_non_dev_chain() -> None:
    harness = funded(dev=False)
    grant = _grant(harness, CAROL.node_id, 10)
    harness.reject_tx(grant, "not_dev")


def test_faucet_grant_overflowing_u64_supply_is_rejected() -> None:
    harness = ChainHarness.create([(ALICE, U64_MAX - 10)])
    harness.reject_tx(_grant(harness, BOB.node_id, 11), "overflow")
    harness.faucet(BOB.node_id, 10)
    assert harness.state.supply == U64_MAX
    harness.reject_tx(_grant(harness, BOB.node_id, 1), "overflow")
    harness.assert_conserved()


def test_faucet_grant_number_must_be_the_next() -> None:
    harness = funded()
    replayed = faucet_transaction(harness.chain_id, 0, FaucetGrant(CAROL.node_id, 5))
    harness.apply(replayed)
    harness.reject_tx(replayed, "bad_nonce")
    skipped = faucet_transaction(harness.chain_id, 5, FaucetGrant(CAROL.node_id, 5))
    harness.reject_tx(skipped, "bad_nonce")
    assert harness.balance(CAROL) == 5


def test_faucet_cannot_fund_its_own_address() -> None:
    harness = funded()
    harness.reject_tx(_grant(harness, FAUCET_ADDRESS, 5), "invalid_recipient")


def test_faucet_grant_for_another_chain_is_rejected() -> None:
    harness = funded()
    grant = faucet_transaction(ChainId(bytes(32)), 0, FaucetGrant(CAROL.node_id, 5))
    harness.reject_tx(grant, "wrong_chain")


def _grant(harness: ChainHarness, to: Address, amount: int) -> Transaction:
    """The next faucet grant, built by hand so a test can expect it to be refused."""
    return faucet_transaction(
        harness.chain_id, harness.state.faucet_grants, FaucetGrant(to, amount)
    )


# -- secret registry ---------------------------------------------------------------------


def test_register_secret_records_the_first_block_only() -> None:
    harness = funded()
    events = harness.call(ALICE, RegisterSecret(secret(1)), height=5)
    assert events == [SecretRegistered(secrethash(secret(1)), secret(1), 5)]
    assert harness.state.secrets[secrethash(secret(1))] == 5
    assert harness.call(BOB, RegisterSecret(secret(1)), height=9) == []
    assert harness.state.secrets[secrethash(secret(1))] == 5
    assert harness.next_nonce(BOB) == 1  # the repeat is a valid, empty call


# -- a rejected call leaves everything as it was -----------------------------------------


def test_rejections_leave_a_busy_state_byte_for_byte_unchanged() -> None:
    """Build a state with accounts, channels, secrets and burned fees, then fire rejections
    of every envelope and account kind at it and compare deep snapshots."""
    harness = funded(min_fee=1)
    harness.faucet(CAROL.node_id, 100)
    channel_id = harness.open(ALICE, BOB, deposits=(200, 100))
    harness.call(CAROL, RegisterSecret(secret(1)), height=3)
    harness.call(
        ALICE,
        ChannelClose(
            channel_id, (harness.proof(BOB, channel_id, 1, 10, locks=[lock(5, 9, secret(1))]),)
        ),
        height=4,
    )
    before = snapshot(harness.state)
    other_chain = ChainHarness.create([(ALICE, 1000)], genesis_nonce=bytes([9]) * 32)
    harness.reject_tx(other_chain.tx(ALICE, Transfer(BOB.node_id, 1), fee=1), "wrong_chain")
    harness.reject(ALICE, Transfer(BOB.node_id, 1), "bad_nonce", nonce=0)
    harness.reject(ALICE, Transfer(BOB.node_id, 1), "bad_nonce", nonce=99)
    harness.reject(ALICE, Transfer(BOB.node_id, 1), "fee_too_low", fee=0)
    harness.reject(ALICE, Transfer(BOB.node_id, 10**6), "insufficient_funds")
    harness.reject(ALICE, Transfer(FAUCET_ADDRESS, 1), "invalid_recipient")
    harness.reject(identity(9), Transfer(BOB.node_id, 0), "insufficient_funds")
    harness.reject(ALICE, ChannelOpen(BOB.node_id, 20), "channel_exists")
    harness.reject(ALICE, ChannelDeposit(channel_id, ALICE.node_id, 500), "wrong_state")
    harness.reject(BOB, ChannelSettle(channel_id), "window_open", height=24)
    harness.reject_tx(_grant(harness, FAUCET_ADDRESS, 1), "invalid_recipient")
    harness.reject_tx(_grant(harness, BOB.node_id, U64_MAX), "overflow")
    assert snapshot(harness.state) == before
    harness.assert_conserved()


def test_snapshot_notices_every_kind_of_change() -> None:
    """The helper the other tests rely on must not be blind to any field."""
    genesis = GenesisSpec((Allocation(ALICE.node_id, 10),)).create(
        nonce=bytes(32), timestamp_ms=0, dev=True
    )
    state = ChainState.from_genesis(genesis)
    base = snapshot(state)
    mutations: list[Callable[[ChainState], object]] = [
        lambda s: setattr(s.account(ALICE.node_id), "balance", 9),
        lambda s: setattr(s.account(ALICE.node_id), "nonce", 1),
        lambda s: s.account(BOB.node_id),
        lambda s: s.secrets.__setitem__(secrethash(secret(1)), 3),
        lambda s: setattr(s, "supply", 11),
        lambda s: setattr(s, "burned", 1),
        lambda s: setattr(s, "faucet_grants", 1),
        lambda s: s.live_pairs.add(frozenset((ALICE.node_id, BOB.node_id))),
    ]
    for mutate in mutations:
        state = ChainState.from_genesis(genesis)
        mutate(state)
        assert snapshot(state) != base
    harness = funded()
    channel_id = harness.open(ALICE, BOB, deposits=(10, 0))
    with_channel = snapshot(harness.state)
    harness.channel(channel_id).withheld_b = 1
    assert snapshot(harness.state) != with_channel
