"""A layer-1 wallet: signs calls for one identity and keeps its nonces in order.

Submissions are serialised (one round trip each, not waiting for blocks), so concurrent callers
never race for a nonce; after a refusal the next nonce is fetched from the chain again.
"""

from __future__ import annotations

from typing import Protocol

import trio

from p2pchan.crypto.keys import Identity
from p2pchan.errors import ChainError
from p2pchan.l1.api import AccountResult, SubmitResult
from p2pchan.l1.contract import channel_id_for
from p2pchan.l1.plasma_contract import plasma_id_for
from p2pchan.l1.plasma_state import MAX_FINALIZE_PER_CALL
from p2pchan.l1.transactions import (
    Call,
    ChannelOpen,
    PlasmaCreate,
    PlasmaDeposit,
    PlasmaFinalizeExits,
    SignedTransaction,
    sign_transaction,
)
from p2pchan.types import Address, ChainId, ChannelId, PlasmaId


class L1Api(Protocol):
    """What a wallet needs of layer 1 (an `L1Client`, or the node's self-healing `L1Link`)."""

    async def account(self, address: Address) -> AccountResult: ...

    async def submit(
        self, transaction: SignedTransaction, *, wait: bool = False
    ) -> SubmitResult: ...

    async def wait_for_height(self, height: int) -> int: ...


class Wallet:
    def __init__(self, client: L1Api, identity: Identity, chain_id: ChainId, *, fee: int = 0):
        self.client = client
        self.identity = identity
        self.chain_id = chain_id
        self.fee = fee
        self._next_nonce: int | None = None
        self._lock = trio.Lock()

    @property
    def address(self) -> bytes:
        return self.identity.node_id

    async def send(self, call: Call, *, wait: bool = False) -> SubmitResult:
        """Sign and submit `call`; with `wait`, return once its block is durable."""
        _nonce, result = await self._send(call, wait=wait)
        return result

    async def open_channel(
        self, partner: Address, settle_timeout: int, *, wait: bool = False
    ) -> tuple[ChannelId, SubmitResult]:
        """Open a channel; its id follows from the opening transaction's nonce."""
        nonce, result = await self._send(ChannelOpen(partner, settle_timeout), wait=wait)
        return channel_id_for(self.chain_id, self.identity.node_id, nonce), result

    async def create_plasma(
        self, exit_bond: int, challenge_period: int, *, wait: bool = False
    ) -> tuple[PlasmaId, SubmitResult]:
        """Create a child chain operated by this identity; its id follows from the nonce."""
        nonce, result = await self._send(PlasmaCreate(exit_bond, challenge_period), wait=wait)
        return plasma_id_for(self.chain_id, self.identity.node_id, nonce), result

    async def plasma_deposit(
        self, plasma_id: PlasmaId, amount: int, *, wait: bool = False
    ) -> SubmitResult:
        return await self.send(PlasmaDeposit(plasma_id, amount), wait=wait)

    async def plasma_finalize_exits(
        self, plasma_id: PlasmaId, max_count: int = MAX_FINALIZE_PER_CALL, *, wait: bool = False
    ) -> SubmitResult:
        return await self.send(PlasmaFinalizeExits(plasma_id, max_count), wait=wait)

    async def _send(self, call: Call, *, wait: bool) -> tuple[int, SubmitResult]:
        async with self._lock:
            if self._next_nonce is None:
                self._next_nonce = (await self.client.account(self.identity.node_id)).pending_nonce
            signed = sign_transaction(
                self.identity, self.chain_id, self._next_nonce, call, fee=self.fee
            )
            try:
                result = await self.client.submit(signed)
            except ChainError:
                self._next_nonce = None
                raise
            nonce = self._next_nonce
            self._next_nonce += 1
        if wait and not result.included:
            await self.client.wait_for_height(result.block)
            result = SubmitResult(result.request_id, result.tx_hash, result.block, True)
        return nonce, result
