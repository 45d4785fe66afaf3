"""The chain watcher: layer-1 blocks and contract events, in order, into the channels.

It resumes after the last block the node processed (a fresh node starts from genesis, so a
channel opened towards it before it ever ran is not missed; a node whose view of every layer-1
channel, for gossip, is behind, replays the blocks it lacks for that view alone) and reports
itself started only once it has caught up with the head it saw when starting: after a restart
the node reacts to everything that happened while it was down (a partner's close above all)
before it talks to peers again. It resubscribes with backoff whenever layer 1 goes away.

Once a block is applied it logs, at info, what the block did to our channels: `channel_opened`,
`channel_funded` (a deposit, ours or the partner's) and `channel_settled` (what we got back);
closes are logged by the channel manager as it answers them.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

import structlog
import trio

from p2pchan.core.inputs import ContractReceiveBlock, SettledNonces
from p2pchan.core.state import NodeState
from p2pchan.errors import ChainError, RemoteProtocolError
from p2pchan.l1.client import subscribe
from p2pchan.l1.events import (
    ChannelCooperativelySettled,
    ChannelDeposited,
    ChannelOpened,
    ChannelSettled,
    Event,
)
from p2pchan.net.driver import Driver, now_ms
from p2pchan.net.l1_link import L1Link
from p2pchan.types import ChannelId

log = structlog.get_logger(__name__)

RETRY_INITIAL = 0.25
RETRY_MAX = 10.0
QUIET_BLOCKS_PER_CHECKPOINT = 50  # how often a block without events is recorded as processed


class ChainWatcher:
    def __init__(
        self,
        host: str,
        port: int,
        driver: Driver,
        link: L1Link,
        *,
        processed: int,
        after_block: Callable[[int], Awaitable[None]] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.driver = driver
        self.after_block = after_block
        self.link = link
        self.processed = processed
        self.connected = False
        self._advanced = trio.Event()

    @property
    def height(self) -> int:
        return self.processed

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        head = (await self.link.status()).height
        started = False
        if self.processed >= head:
            task_status.started(self.processed)
            started = True
        backoff = RETRY_INITIAL
        while True:
            view = self.driver.state.chain_view.height
            try:
                async with subscribe(
                    self.host, self.port, min(self.processed, view) + 1
                ) as notices:
                    self.connected = True
                    backoff = RETRY_INITIAL
                    async for notice in notices:
                        height = notice.header.height
                        if height <= self.processed:
                            if height > self.driver.state.chain_view.height:
                                replay = ContractReceiveBlock(
                                    height, notice.events, {}, now_ms(), view_only=True
                                )
                                await self.driver.step([replay])
                            continue
                        checkpoint = (
                            bool(notice.events) or height % QUIET_BLOCKS_PER_CHECKPOINT == 0
                        )
                        settled = await self._settled_nonces(notice.events)
                        block = ContractReceiveBlock(
                            height, notice.events, settled, now_ms(), checkpoint
                        )
                        await self.driver.step([block])
                        log_channel_events(self.driver.state, notice.events)
                        if self.after_block is not None:
                            await self.after_block(height)
                        self.processed = height
                        self._advanced.set()
                        self._advanced = trio.Event()
                        if not started and height >= head:
                            log.info("chain_caught_up", height=height)
                            task_status.started(height)
                            started = True
            except (ChainError, RemoteProtocolError) as error:
                if self.connected:
                    log.warning("l1_subscription_lost", reason=str(error))
                self.connected = False
            await trio.sleep(backoff * random.uniform(0.5, 1.0))
            backoff = min(backoff * 2, RETRY_MAX)

    async def _settled_nonces(self, events: tuple[Event, ...]) -> dict[ChannelId, SettledNonces]:
        """The nonces our channels settled with, from their layer-1 records (the settle event
        does not carry them)."""
        settled: dict[ChannelId, SettledNonces] = {}
        for event in events:
            if isinstance(event, ChannelSettled) and event.channel_id in self.driver.state.channels:
                record = await self.link.channel(event.channel_id)
                if record is not None:
                    nonces = SettledNonces(record.proof_a.nonce, record.proof_b.nonce)
                    settled[event.channel_id] = nonces
        return settled

    async def wait_for_height(self, height: int) -> None:
        while self.processed < height:
            await self._advanced.wait()


def log_channel_events(state: NodeState, events: tuple[Event, ...]) -> None:
    """One info line per event of this block that concerns one of our channels."""
    for event in events:
        channel_id = getattr(event, "channel_id", None)
        channel = state.channels.get(channel_id) if channel_id is not None else None
        if channel is None:
            continue
        fields = {"channel": channel.channel_id.hex(), "peer": channel.partner.hex()}
        if isinstance(event, ChannelOpened):
            log.info("channel_opened", settle_timeout=event.settle_timeout, **fields)
        elif isinstance(event, ChannelDeposited):
            by = "us" if event.participant == state.us else "partner"
            log.info("channel_funded", by=by, total_deposit=event.total_deposit, **fields)
        elif isinstance(event, ChannelSettled):
            ours = event.payout_a if channel.we_are_a else event.payout_b
            log.info("channel_settled", cooperative=False, to_us=ours, **fields)
        elif isinstance(event, ChannelCooperativelySettled):
            ours = event.balance_a if channel.we_are_a else event.balance_b
            log.info("channel_settled", cooperative=True, to_us=ours, **fields)
