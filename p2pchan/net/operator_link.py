"""The node's standing connection to one Plasma operator, re-established whenever it drops.

As `L1Link` is for layer 1: callers share one pipelined `OperatorClient`; each call waits up to
`timeout` seconds for a connection and its answer, then raises `OperatorUnavailable`, so the
watcher treats an operator that is down, slow or silent alike (a block not served). While the
operator stays away it says so once a minute; `plasma_operator_restored` ends the story.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
import trio

from p2pchan.log import Throttle
from p2pchan.plasma.client import OperatorClient, OperatorUnavailable

log = structlog.get_logger(__name__)

T = TypeVar("T")
RECONNECT_INITIAL = 0.1
RECONNECT_MAX = 2.0


class OperatorLink:
    def __init__(self, host: str, port: int, *, timeout: float = 5.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._client: OperatorClient | None = None
        self._connected = trio.Event()
        self._throttle = Throttle()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def connected(self) -> bool:
        return self._client is not None

    async def run(self) -> None:
        backoff = RECONNECT_INITIAL
        down = False
        while True:
            try:
                async with OperatorClient.connect(self.host, self.port) as client:
                    self._client = client
                    self._connected.set()
                    backoff = RECONNECT_INITIAL
                    if down:
                        log.info("plasma_operator_restored", address=self.address)
                        down = False
                        self._throttle.reset("down")
                    await client.closed.wait()
                log.warning("plasma_operator_lost", address=self.address)
            except OperatorUnavailable as error:
                down = True
                if (repeated := self._throttle.allow("down")) is not None:
                    log.warning("plasma_operator_down", reason=error.message, repeated=repeated)
            finally:
                self._client = None
                if self._connected.is_set():
                    self._connected = trio.Event()
            await trio.sleep(backoff * random.uniform(0.5, 1.0))
            backoff = min(backoff * 2, RECONNECT_MAX)

    async def call(
        self, call: Callable[[OperatorClient], Awaitable[T]], *, seconds: float | None = None
    ) -> T:
        """`call(client)` on the live connection, within `seconds` (the link's timeout by
        default)."""
        with trio.move_on_after(self.timeout if seconds is None else seconds):
            while self._client is None:
                await self._connected.wait()
            return await call(self._client)
        raise OperatorUnavailable(f"the operator at {self.address} did not answer in time")
