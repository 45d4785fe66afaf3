"""A standing link to a server: calls wait for a connection, the link reconnects when the
connection drops, and a server that stays away reads as the server's unavailable error."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from p2pchan.errors import ChainError
from p2pchan.l1.client import L1Unavailable
from p2pchan.net.link import Link


class FakeClient:
    def __init__(self, number: int) -> None:
        self.number = number
        self.closed = trio.Event()

    async def ask(self) -> int:
        return self.number


class FakeServer:
    """Refuses connections while `up` is false; numbers the clients it accepts."""

    def __init__(self) -> None:
        self.up = False
        self.clients: list[FakeClient] = []

    @asynccontextmanager
    async def connect(self, host: str, port: int) -> AsyncIterator[FakeClient]:
        if not self.up:
            raise L1Unavailable("Connection refused")
        client = FakeClient(len(self.clients) + 1)
        self.clients.append(client)
        yield client


def link_to(server: FakeServer, timeout: float = 5.0) -> Link[FakeClient]:
    return Link(
        "127.0.0.1",
        7700,
        connect=server.connect,
        failure=ChainError,
        unavailable=lambda seconds: L1Unavailable(f"no answer within {seconds:g} s"),
        events="test_link",
        timeout=timeout,
        reconnect=(0.1, 1.0),
    )


async def test_a_call_waits_for_the_server_and_the_link_reconnects_after_a_drop(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    server = FakeServer()
    link = link_to(server, timeout=60)
    nursery.start_soon(link.run)
    assert not link.connected

    async def bring_up_later() -> None:
        await trio.sleep(3)
        server.up = True

    nursery.start_soon(bring_up_later)
    assert await link.call(lambda client: client.ask()) == 1  # waited through the refusals
    assert link.connected

    server.clients[0].closed.set()  # the connection drops
    await trio.testing.wait_all_tasks_blocked()  # the link sees it (a call now would fail)
    assert not link.connected
    assert await link.call(lambda client: client.ask()) == 2
    assert len(server.clients) == 2


async def test_a_server_that_stays_away_raises_its_unavailable_error_in_time(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    link = link_to(FakeServer(), timeout=5)
    nursery.start_soon(link.run)
    started = trio.current_time()
    with pytest.raises(L1Unavailable, match="no answer within 5 s"):
        await link.call(lambda client: client.ask())
    assert trio.current_time() - started == pytest.approx(5)
    with pytest.raises(L1Unavailable, match=r"no answer within 0\.5 s"):
        await link.call(lambda client: client.ask(), seconds=0.5)
