"""Following layer 1: the head height, kept current through a block subscription.

The follower reconnects with backoff whenever layer 1 goes away, resuming from the next block it
has not seen. (The chain watcher that reacts to channel events builds on this.)
"""

from __future__ import annotations

import random

import structlog
import trio

from p2pchan.errors import ChainError, RemoteProtocolError
from p2pchan.l1.client import subscribe

log = structlog.get_logger(__name__)

RETRY_INITIAL = 0.25
RETRY_MAX = 10.0


class ChainFollower:
    def __init__(self, host: str, port: int, *, start_height: int) -> None:
        self.host = host
        self.port = port
        self.height = start_height
        self.connected = False
        self._advanced = trio.Event()

    async def run(self) -> None:
        backoff = RETRY_INITIAL
        while True:
            try:
                async with subscribe(self.host, self.port, self.height + 1) as notices:
                    self.connected = True
                    backoff = RETRY_INITIAL
                    async for notice in notices:
                        self.height = notice.header.height
                        self._advanced.set()
                        self._advanced = trio.Event()
            except (ChainError, RemoteProtocolError) as error:
                if self.connected:
                    log.warning("l1_subscription_lost", reason=str(error))
                self.connected = False
            await trio.sleep(backoff * random.uniform(0.5, 1.0))
            backoff = min(backoff * 2, RETRY_MAX)

    async def wait_for_height(self, height: int) -> None:
        while self.height < height:
            await self._advanced.wait()
