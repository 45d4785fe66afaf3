"""The per-link proxy of chaos runs, on loopback: bytes pass through unchanged (also when
delayed), a drop swallows them and then ends the stream, a reset and a partition cut the
link, and a healed partition lets the next connection through."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator

import pytest
import trio

from p2pchan_cli.chaos.proxy import LinkProxy
from p2pchan_cli.localnet.supervisor import poll_until

DEADLINE = 10


async def echo(stream: trio.SocketStream) -> None:
    try:
        async for data in stream:
            await stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


@pytest.fixture
async def proxy() -> AsyncIterator[LinkProxy]:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, echo, 0, host="127.0.0.1")
        )
        target = listeners[0].socket.getsockname()[1]
        link = LinkProxy("a-b", target)
        await nursery.start(link.serve)
        yield link
        nursery.cancel_scope.cancel()


async def connect(link: LinkProxy) -> trio.SocketStream:
    return await trio.open_tcp_stream("127.0.0.1", link.port)


async def round_trip(stream: trio.SocketStream, data: bytes) -> bytes:
    await stream.send_all(data)
    received = b""
    while len(received) < len(data):
        chunk = await stream.receive_some(65536)
        if not chunk:
            break
        received += chunk
    return received


async def ends(stream: trio.SocketStream) -> bool:
    """The stream is closed or reset by the other side."""
    try:
        return await stream.receive_some(65536) == b""
    except trio.BrokenResourceError:
        return True


async def test_bytes_pass_through_unchanged_also_when_delayed(proxy: LinkProxy) -> None:
    with trio.fail_after(DEADLINE):
        stream = await connect(proxy)
        assert await round_trip(stream, b"hello") == b"hello"
        proxy.set_delay(0.05)
        payload = bytes(range(256)) * 400
        assert await round_trip(stream, payload) == payload
        assert len(proxy.connections) == 1


async def test_a_drop_swallows_bytes_and_then_ends_the_stream(proxy: LinkProxy) -> None:
    with trio.fail_after(DEADLINE):
        stream = await connect(proxy)
        assert await round_trip(stream, b"before") == b"before"
        proxy.set_dropping(True)
        await stream.send_all(b"lost")

        async def swallowed() -> bool:  # the proxy has read the bytes (and dropped them)
            return any(connection.holed for connection in proxy.connections)

        await poll_until(swallowed, 0.01)
        proxy.set_dropping(False)
        assert await ends(stream)  # the bytes never came back, and the stream cannot go on


async def test_a_reset_cuts_every_connection(proxy: LinkProxy) -> None:
    with trio.fail_after(DEADLINE):
        first, second = await connect(proxy), await connect(proxy)
        assert await round_trip(first, b"x") == b"x" and await round_trip(second, b"y") == b"y"
        assert proxy.reset() == 2
        assert await ends(first) and await ends(second)
        again = await connect(proxy)
        assert await round_trip(again, b"z") == b"z"  # a reset is over at once


async def test_a_partition_refuses_links_until_it_heals(proxy: LinkProxy) -> None:
    with trio.fail_after(DEADLINE):
        stream = await connect(proxy)
        assert await round_trip(stream, b"x") == b"x"
        proxy.set_partitioned(True)
        assert await ends(stream)
        refused = await connect(proxy)
        assert await ends(refused)
        proxy.heal()
        healed = await connect(proxy)
        assert await round_trip(healed, b"back") == b"back"


async def test_a_node_down_behind_the_proxy_looks_like_a_refused_connection() -> None:
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            port = listeners[0].socket.getsockname()[1]
            await listeners[0].aclose()  # nothing listens there now
            link = LinkProxy("a-b", port)
            await nursery.start(link.serve)
            assert await ends(await connect(link))
            nursery.cancel_scope.cancel()
