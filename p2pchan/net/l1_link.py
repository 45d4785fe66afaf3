"""The node's standing connection to layer 1, re-established whenever it drops.

It offers the calls the node makes (the same names as `L1Client`), each waiting up to
`timeout` seconds for a connection before raising `L1Unavailable`, so callers such as the wallet
keep working across a layer-1 restart. While layer 1 stays away it says so once a minute, not
at every retry; `l1_link_restored` ends the story.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
import trio

from p2pchan.errors import ChainError
from p2pchan.l1.api import AccountResult, StatusResult, SubmitResult, TransactionResult
from p2pchan.l1.client import L1Client, L1Unavailable
from p2pchan.l1.plasma_state import BlockCommit, ExitRecord, PlasmaChainInfo
from p2pchan.l1.state import ChannelRecord
from p2pchan.l1.transactions import SignedTransaction
from p2pchan.log import Throttle
from p2pchan.types import Address, ChannelId, PlasmaId, SecretHash, TxHash

log = structlog.get_logger(__name__)

T = TypeVar("T")
RECONNECT_INITIAL = 0.2
RECONNECT_MAX = 5.0


class L1Link:
    def __init__(self, host: str, port: int, *, timeout: float = 30.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._client: L1Client | None = None
        self._connected = trio.Event()
        self._throttle = Throttle()

    async def run(self) -> None:
        backoff = RECONNECT_INITIAL
        down = False
        while True:
            try:
                async with L1Client.connect(self.host, self.port) as client:
                    self._client = client
                    self._connected.set()
                    backoff = RECONNECT_INITIAL
                    if down:
                        log.info("l1_link_restored", address=f"{self.host}:{self.port}")
                        down = False
                        self._throttle.reset("down")
                    await client.closed.wait()
                log.warning("l1_link_lost")
            except ChainError as error:
                down = True
                if (repeated := self._throttle.allow("down")) is not None:
                    log.warning("l1_link_down", reason=error.message, repeated=repeated)
            finally:
                self._client = None
                if self._connected.is_set():
                    self._connected = trio.Event()
            await trio.sleep(backoff * random.uniform(0.5, 1.0))
            backoff = min(backoff * 2, RECONNECT_MAX)

    async def _call(self, call: Callable[[L1Client], Awaitable[T]]) -> T:
        with trio.move_on_after(self.timeout):
            while self._client is None:
                await self._connected.wait()
            return await call(self._client)
        raise L1Unavailable(f"layer 1 at {self.host}:{self.port} unreachable for {self.timeout} s")

    async def status(self) -> StatusResult:
        return await self._call(lambda c: c.status())

    async def account(self, address: Address) -> AccountResult:
        return await self._call(lambda c: c.account(address))

    async def submit(self, transaction: SignedTransaction, *, wait: bool = False) -> SubmitResult:
        return await self._call(lambda c: c.submit(transaction, wait=wait))

    async def wait_for_height(self, height: int) -> int:
        return await self._call(lambda c: c.wait_for_height(height))

    async def channel(self, channel_id: ChannelId) -> ChannelRecord | None:
        return await self._call(lambda c: c.channel(channel_id))

    async def secret_block(self, secrethash: SecretHash) -> int | None:
        return await self._call(lambda c: c.secret_block(secrethash))

    async def transaction(self, tx_hash: TxHash) -> TransactionResult:
        return await self._call(lambda c: c.transaction(tx_hash))

    async def plasma_chain(self, plasma_id: PlasmaId) -> PlasmaChainInfo | None:
        return await self._call(lambda c: c.plasma_chain(plasma_id))

    async def plasma_block(self, plasma_id: PlasmaId, blknum: int) -> BlockCommit | None:
        return await self._call(lambda c: c.plasma_block(plasma_id, blknum))

    async def plasma_exit(self, plasma_id: PlasmaId, utxo_pos: int) -> ExitRecord | None:
        return await self._call(lambda c: c.plasma_exit(plasma_id, utxo_pos))
