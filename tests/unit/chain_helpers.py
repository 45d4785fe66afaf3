"""Helpers for driving the pure layer-1 chain in tests: a harness, proofs, snapshots.

`ChainHarness` wraps a `ChainState` built from a fresh genesis, signs each call with the next
nonce of its sender and applies it at a given height. `snapshot(state)` copies everything a call
may change into plain values, so a test can check that a rejected call changed nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from p2pchan.crypto.hashing import sha256
from p2pchan.crypto.keys import Identity
from p2pchan.crypto.signing import SigningTag
from p2pchan.errors import ChainError
from p2pchan.l1 import chain
from p2pchan.l1.contract import channel_id_for
from p2pchan.l1.events import Event
from p2pchan.l1.genesis import Allocation, GenesisSpec
from p2pchan.l1.plasma_state import PlasmaChain
from p2pchan.l1.state import ChainState, ChannelRecord
from p2pchan.l1.transactions import (
    Call,
    ChannelDeposit,
    ChannelOpen,
    CooperativeSettleCall,
    FaucetGrant,
    Transaction,
    decode_transaction,
    faucet_transaction,
    sign_transaction,
)
from p2pchan.types import Address, ChainId, ChannelId, Secret, SecretHash
from p2pchan.wire.balance_proof import (
    BalanceProof,
    SignedBalanceProof,
    counter_sign,
    sign_balance_proof,
)
from p2pchan.wire.coop_settle import CooperativeSettle
from p2pchan.wire.locks import EMPTY_LOCKSROOT, Lock, locksroot


def identity(index: int) -> Identity:
    """A deterministic identity: the same index gives the same key in every run."""
    return Identity(bytes([index]) * 32)


def secret(index: int) -> Secret:
    return Secret(sha256(b"test secret", index.to_bytes(8, "big")))


def secrethash(value: Secret) -> SecretHash:
    return SecretHash(sha256(value))


def snapshot(state: ChainState) -> dict[str, Any]:
    """Everything a call may change, as plain (deep-copied) values."""
    return {
        "accounts": {address: account.to_wire() for address, account in state.accounts.items()},
        "channels": {channel_id: record.to_wire() for channel_id, record in state.channels.items()},
        "live_pairs": frozenset(state.live_pairs),
        "secrets": dict(state.secrets),
        "supply": state.supply,
        "burned": state.burned,
        "faucet_grants": state.faucet_grants,
        "plasma": {plasma_id: plasma_snapshot(chain) for plasma_id, chain in state.plasma.items()},
    }


def plasma_snapshot(chain: PlasmaChain) -> dict[str, Any]:
    """A child chain's whole record as plain values."""
    return {
        "info": chain.info().to_wire(),
        "deposits_since_block": chain.deposits_since_block,
        "blocks": {blknum: commit.to_wire() for blknum, commit in chain.blocks.items()},
        "exits": {position: record.to_wire() for position, record in chain.exits.items()},
        "queue": list(chain.queue),
    }


def circulating(state: ChainState) -> int:
    """Layer-1 balances plus what the contract holds: must equal supply - burned."""
    balances = sum(account.balance for account in state.accounts.values())
    return balances + state.contract_holdings()


@dataclass
class ChainHarness:
    """A chain state plus the genesis it came from, with helpers to sign and apply calls."""

    state: ChainState
    chain_id: ChainId
    height: int = 1

    @classmethod
    def create(
        cls,
        balances: Sequence[tuple[Identity, int]],
        *,
        min_fee: int = 0,
        dev: bool = True,
        genesis_nonce: bytes = bytes(32),
    ) -> ChainHarness:
        allocations = tuple(Allocation(who.node_id, amount) for who, amount in balances)
        genesis = GenesisSpec(allocations, min_fee=min_fee).create(
            nonce=genesis_nonce, timestamp_ms=0, dev=dev
        )
        return cls(ChainState.from_genesis(genesis), genesis.chain_id)

    # -- transactions ---------------------------------------------------------------------

    def next_nonce(self, who: Identity) -> int:
        account = self.state.accounts.get(who.node_id)
        return account.nonce if account else 0

    def tx(
        self,
        who: Identity,
        call: Call,
        *,
        nonce: int | None = None,
        fee: int | None = None,
        chain_id: ChainId | None = None,
    ) -> Transaction:
        signed = sign_transaction(
            who,
            self.chain_id if chain_id is None else chain_id,
            self.next_nonce(who) if nonce is None else nonce,
            call,
            fee=self.state.min_fee if fee is None else fee,
        )
        return decode_transaction(signed)

    def apply(self, tx: Transaction, height: int | None = None) -> list[Event]:
        return chain.apply(self.state, tx, self.height if height is None else height)

    def call(
        self, who: Identity, call: Call, height: int | None = None, **tx_options: Any
    ) -> list[Event]:
        """Sign `call` with `who`'s next nonce and apply it; raises `ChainError` if refused."""
        return self.apply(self.tx(who, call, **tx_options), height)

    def reject(
        self, who: Identity, call: Call, code: str, height: int | None = None, **tx_options: Any
    ) -> ChainError:
        """Apply `call`, expect `ChainError(code)` and check the state did not change at all."""
        return self.reject_tx(self.tx(who, call, **tx_options), code, height)

    def reject_tx(self, tx: Transaction, code: str, height: int | None = None) -> ChainError:
        before = snapshot(self.state)
        with pytest.raises(ChainError) as caught:
            self.apply(tx, height)
        assert caught.value.code == code, caught.value
        assert snapshot(self.state) == before, "a rejected call changed the state"
        return caught.value

    def faucet(self, to: Address, amount: int, height: int | None = None) -> list[Event]:
        grant = faucet_transaction(self.chain_id, self.state.faucet_grants, FaucetGrant(to, amount))
        return self.apply(grant, height)

    # -- reading --------------------------------------------------------------------------

    def balance(self, who: Identity | Address) -> int:
        return self.state.balance(who.node_id if isinstance(who, Identity) else who)

    def channel(self, channel_id: ChannelId) -> ChannelRecord:
        return self.state.channels[channel_id]

    def assert_conserved(self) -> None:
        assert circulating(self.state) == self.state.supply - self.state.burned

    # -- channels -------------------------------------------------------------------------

    def open(
        self,
        opener: Identity,
        partner: Identity,
        *,
        settle_timeout: int = 20,
        deposits: tuple[int, int] = (0, 0),
        height: int | None = None,
    ) -> ChannelId:
        """Open a channel (opener is participant A) and make both deposits if non-zero."""
        channel_id = channel_id_for(self.chain_id, opener.node_id, self.next_nonce(opener))
        self.call(opener, ChannelOpen(partner.node_id, settle_timeout), height)
        for who, amount in zip((opener, partner), deposits, strict=True):
            if amount:
                self.call(who, ChannelDeposit(channel_id, who.node_id, amount), height)
        return channel_id

    def proof(
        self,
        sender: Identity,
        channel_id: ChannelId,
        nonce: int,
        transferred: int = 0,
        *,
        locks: Sequence[Lock] = (),
        locked: int | None = None,
        counter_signer: Identity | None = None,
        chain_id: ChainId | None = None,
    ) -> SignedBalanceProof:
        """A balance proof signed by `sender`, counter-signed by `counter_signer` if given.

        `locked` defaults to the sum of the locks' amounts.
        """
        proof = BalanceProof(
            self.chain_id if chain_id is None else chain_id,
            channel_id,
            sender.node_id,
            nonce,
            transferred,
            sum(lock.amount for lock in locks) if locked is None else locked,
            locksroot(locks) if locks else EMPTY_LOCKSROOT,
        )
        signed = sign_balance_proof(sender, proof)
        return counter_sign(counter_signer, signed) if counter_signer else signed

    def coop_settle(
        self,
        channel_id: ChannelId,
        balance_a: int,
        balance_b: int,
        expiration_block: int,
        *,
        signers: tuple[Identity | None, Identity | None],
        deposits: tuple[int, int] | None = None,
        chain_id: ChainId | None = None,
        for_channel: ChannelId | None = None,
    ) -> CooperativeSettleCall:
        """A cooperative-settle call for `channel_id`; a `None` signer leaves a zero signature.

        `deposits`, `chain_id` and `for_channel` override what the signed terms say.
        """
        record = self.channel(channel_id)
        deposit_a, deposit_b = (
            (record.deposit_a, record.deposit_b) if deposits is None else deposits
        )
        terms = CooperativeSettle(
            self.chain_id if chain_id is None else chain_id,
            channel_id if for_channel is None else for_channel,
            deposit_a,
            deposit_b,
            balance_a,
            balance_b,
            expiration_block,
        )
        data = terms.encode()
        signature_a, signature_b = (
            signer.sign(SigningTag.COOP_SETTLE, data) if signer else bytes(64) for signer in signers
        )
        return CooperativeSettleCall(channel_id, data, signature_a, signature_b)


def lock(amount: int, expiration_block: int, secret_value: Secret) -> Lock:
    return Lock(amount, expiration_block, secrethash(secret_value))
