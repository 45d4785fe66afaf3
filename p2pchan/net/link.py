"""A node's standing connection to one server (layer 1, a Plasma operator), re-established
whenever it drops.

Callers share the one live client: `call` waits up to a timeout for a connection and the
answer, then raises the server's own "unavailable" error, so a server that is down, slow or
silent reads the same to the caller. Reconnects back off exponentially (with jitter, so nodes
restarted together do not dial in step). While the server stays away the link says so once a
minute, not at every retry; a `*_restored` line ends the story.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Generic, Protocol, TypeVar

import structlog
import trio

from p2pchan.log import Throttle

log = structlog.get_logger(__name__)

T = TypeVar("T")


class Client(Protocol):
    closed: trio.Event  # set once the connection is gone


C = TypeVar("C", bound=Client)


class Link(Generic[C]):
    """`connect(host, port)` opens a client; a failed attempt raises `failure` (logged with its
    `message`); `unavailable(seconds)` is what `call` raises when no answer came in time; the
    log events are `<events>_lost`, `_down` and `_restored`; `reconnect` the first and the
    longest pause between attempts, in seconds."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        connect: Callable[[str, int], AbstractAsyncContextManager[C]],
        failure: type[Exception],
        unavailable: Callable[[float], Exception],
        events: str,
        timeout: float,
        reconnect: tuple[float, float],
    ) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._connect = connect
        self._failure = failure
        self._unavailable = unavailable
        self._events = events
        self._reconnect_initial, self._reconnect_max = reconnect
        self._client: C | None = None
        self._connected = trio.Event()
        self._throttle = Throttle()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def connected(self) -> bool:
        return self._client is not None

    async def run(self) -> None:
        """Keep a connection up until cancelled."""
        backoff = self._reconnect_initial
        down = False
        while True:
            try:
                async with self._connect(self.host, self.port) as client:
                    self._client = client
                    self._connected.set()
                    backoff = self._reconnect_initial
                    if down:
                        log.info(f"{self._events}_restored", address=self.address)
                        down = False
                        self._throttle.reset("down")
                    await client.closed.wait()
                log.warning(f"{self._events}_lost", address=self.address)
            except self._failure as error:
                down = True
                if (repeated := self._throttle.allow("down")) is not None:
                    reason = getattr(error, "message", str(error))
                    log.warning(f"{self._events}_down", reason=reason, repeated=repeated)
            finally:
                self._client = None
                if self._connected.is_set():
                    self._connected = trio.Event()
            await trio.sleep(backoff * random.uniform(0.5, 1.0))
            backoff = min(backoff * 2, self._reconnect_max)

    async def call(self, call: Callable[[C], Awaitable[T]], *, seconds: float | None = None) -> T:
        """`call(client)` on the live connection, within `seconds` (the link's timeout by
        default), else the server's unavailable error."""
        limit = self.timeout if seconds is None else seconds
        with trio.move_on_after(limit):
            while self._client is None:
                await self._connected.wait()
            return await call(self._client)
        raise self._unavailable(limit)
