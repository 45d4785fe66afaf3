"""The node's standing connection to layer 1 (a `Link`), re-established whenever it drops.

It offers the calls the node makes (the same names as `L1Client`), each waiting up to
`timeout` seconds for a connection before raising `L1Unavailable`, so callers such as the wallet
keep working across a layer-1 restart.
"""

from __future__ import annotations

from p2pchan.errors import ChainError
from p2pchan.l1.api import AccountResult, StatusResult, SubmitResult, TransactionResult
from p2pchan.l1.client import L1Client, L1Unavailable
from p2pchan.l1.plasma_state import BlockCommit, ExitRecord, PlasmaChainInfo
from p2pchan.l1.state import ChannelRecord
from p2pchan.l1.transactions import SignedTransaction
from p2pchan.net.link import Link
from p2pchan.types import Address, ChannelId, PlasmaId, SecretHash, TxHash

RECONNECT = (0.2, 5.0)  # seconds: first and longest pause between attempts


class L1Link(Link[L1Client]):
    def __init__(self, host: str, port: int, *, timeout: float = 30.0) -> None:
        super().__init__(
            host,
            port,
            connect=L1Client.connect,
            failure=ChainError,
            unavailable=lambda seconds: L1Unavailable(
                f"layer 1 at {host}:{port} unreachable for {seconds:g} s"
            ),
            events="l1_link",
            timeout=timeout,
            reconnect=RECONNECT,
        )

    async def status(self) -> StatusResult:
        return await self.call(lambda c: c.status())

    async def account(self, address: Address) -> AccountResult:
        return await self.call(lambda c: c.account(address))

    async def submit(self, transaction: SignedTransaction, *, wait: bool = False) -> SubmitResult:
        return await self.call(lambda c: c.submit(transaction, wait=wait))

    async def wait_for_height(self, height: int) -> int:
        return await self.call(lambda c: c.wait_for_height(height))

    async def channel(self, channel_id: ChannelId) -> ChannelRecord | None:
        return await self.call(lambda c: c.channel(channel_id))

    async def secret_block(self, secrethash: SecretHash) -> int | None:
        return await self.call(lambda c: c.secret_block(secrethash))

    async def transaction(self, tx_hash: TxHash) -> TransactionResult:
        return await self.call(lambda c: c.transaction(tx_hash))

    async def plasma_chain(self, plasma_id: PlasmaId) -> PlasmaChainInfo | None:
        return await self.call(lambda c: c.plasma_chain(plasma_id))

    async def plasma_block(self, plasma_id: PlasmaId, blknum: int) -> BlockCommit | None:
        return await self.call(lambda c: c.plasma_block(plasma_id, blknum))

    async def plasma_exit(self, plasma_id: PlasmaId, utxo_pos: int) -> ExitRecord | None:
        return await self.call(lambda c: c.plasma_exit(plasma_id, utxo_pos))
