"""The Noise transport over memory streams: the XK handshake between `initiate` and `respond`,
whole bodies both ways across rekeys, and every kind of bad input ending the connection with a
typed error."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

from p2pchan.crypto.keys import Identity, x25519_public_key
from p2pchan.crypto.noise import ACT_ONE_SIZE, ACT_THREE_SIZE, ACT_TWO_SIZE, HandshakeState
from p2pchan.crypto.transport import HEADER_SIZE, MAX_BODY_SIZE, REKEY_INTERVAL
from p2pchan.errors import CryptoError, LocalProtocolError, RemoteProtocolError
from p2pchan.net.transport import SecureStream, initiate, respond
from p2pchan.types import KEY_SIZE

DEADLINE = 10
HANDSHAKE_SIZE = ACT_ONE_SIZE + ACT_THREE_SIZE
"""Bytes the initiator writes before its first frame (the responder: ACT_TWO_SIZE)."""

StreamPairFactory = Callable[[], tuple[trio.abc.Stream, trio.abc.Stream]]


class TamperingStream(trio.abc.Stream):
    """Wraps one end of a stream pair and flips one bit of everything it sends, at `flip_at`
    (counted from the first byte this end sends): an attacker on the path."""

    def __init__(self, inner: trio.abc.Stream, flip_at: int) -> None:
        self.inner = inner
        self.flip_at = flip_at
        self.sent = 0

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        chunk = bytearray(data)
        position = self.flip_at - self.sent
        if 0 <= position < len(chunk):
            chunk[position] ^= 0x04
        self.sent += len(chunk)
        await self.inner.send_all(chunk)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def send_eof(self) -> None:  # pragma: no cover - the transport never half-closes
        raise NotImplementedError

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def handshake(
    client: trio.abc.Stream, server: trio.abc.Stream, alice: Identity, bob: Identity
) -> tuple[SecureStream, SecureStream]:
    """Alice initiates towards Bob on `client`; Bob responds on `server`."""
    results: dict[str, SecureStream] = {}

    async def run_initiator() -> None:
        results["alice"] = await initiate(client, alice, bob.node_id)

    async def run_responder() -> None:
        results["bob"] = await respond(server, bob)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_initiator)
        nursery.start_soon(run_responder)
    return results["alice"], results["bob"]


async def expect_error(
    error_type: type[Exception], run: Callable[[], Awaitable[object]]
) -> Exception:
    """Run `run`, which must fail with `error_type`; return the error."""
    with pytest.raises(error_type) as caught:
        await run()
    return caught.value


# -- a working connection ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "make_pair",
    [trio.testing.memory_stream_pair, trio.testing.lockstep_stream_pair],
    ids=["memory", "lockstep"],
)
async def test_handshake_authenticates_both_sides_and_carries_bodies_both_ways(
    make_pair: StreamPairFactory,
) -> None:
    with trio.fail_after(DEADLINE):
        alice, bob = Identity.generate(), Identity.generate()
        client, server = make_pair()
        to_bob, to_alice = await handshake(client, server, alice, bob)
        assert to_bob.remote_node_id == bob.node_id
        assert to_alice.remote_node_id == alice.node_id
        assert to_bob.cipher.handshake_hash == to_alice.cipher.handshake_hash

        bodies = [b"", b"x", os.urandom(1000), os.urandom(MAX_BODY_SIZE)]
        received: dict[str, list[bytes]] = {"alice": [], "bob": []}

        async def collect(stream: SecureStream, name: str) -> None:
            while len(received[name]) < len(bodies):
                received[name] += await stream.receive()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(collect, to_alice, "bob")
            nursery.start_soon(collect, to_bob, "alice")
            await to_bob.send(bodies)
            await to_alice.send(list(reversed(bodies)))
        assert received["bob"] == bodies
        assert received["alice"] == list(reversed(bodies))


async def test_thousands_of_interleaved_bodies_both_ways_survive_the_rekeys() -> None:
    with trio.fail_after(DEADLINE):
        alice, bob = Identity.generate(), Identity.generate()
        client, server = trio.testing.memory_stream_pair()
        to_bob, to_alice = await handshake(client, server, alice, bob)
        count = 2_600  # two encryptions a frame: 5,200 nonces, five rekeys each way

        def body(sender: str, index: int) -> bytes:
            return f"{sender}:{index}:".encode() + bytes(index % 300)

        received: dict[str, list[bytes]] = {"alice": [], "bob": []}

        async def send_many(stream: SecureStream, sender: str) -> None:
            index = 0
            while index < count:
                batch = [body(sender, i) for i in range(index, min(index + 1 + index % 7, count))]
                await stream.send(batch)
                index += len(batch)
                await trio.lowlevel.checkpoint()  # let the other tasks interleave

        async def receive_all(stream: SecureStream, receiver: str) -> None:
            while len(received[receiver]) < count:
                bodies = await stream.receive()
                assert bodies, "the peer closed early"
                received[receiver] += bodies

        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive_all, to_alice, "bob")
            nursery.start_soon(receive_all, to_bob, "alice")
            nursery.start_soon(send_many, to_bob, "alice")
            nursery.start_soon(send_many, to_alice, "bob")

        assert received["bob"] == [body("alice", i) for i in range(count)]
        assert received["alice"] == [body("bob", i) for i in range(count)]
        for stream in (to_bob, to_alice):
            assert stream.cipher.encryptor.nonce == 2 * count
            assert stream.cipher.decryptor.nonce == 2 * count
        assert 2 * count > 5 * REKEY_INTERVAL


async def test_clean_close_at_a_frame_boundary_is_an_empty_receive() -> None:
    with trio.fail_after(DEADLINE):
        alice, bob = Identity.generate(), Identity.generate()
        to_bob, to_alice = await handshake(*trio.testing.memory_stream_pair(), alice, bob)
        await to_bob.send([b"last words"])
        await to_bob.aclose()
        assert await to_alice.receive() == [b"last words"]
        assert await to_alice.receive() == []


# -- the handshake refuses bad input ----------------------------------------------------------


async def test_initiator_dialling_the_wrong_key_fails_at_act_one() -> None:
    with trio.fail_after(DEADLINE):
        alice, bob, carol = Identity.generate(), Identity.generate(), Identity.generate()
        client, server = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as nursery:

            async def alice_dials_carol_but_reaches_bob() -> None:
                error = await expect_error(
                    RemoteProtocolError, lambda: initiate(client, alice, carol.node_id)
                )
                assert "handshake" in str(error)

            nursery.start_soon(alice_dials_carol_but_reaches_bob)
            await expect_error(CryptoError, lambda: respond(server, bob))
            await server.aclose()  # what the caller does with a failed handshake


@pytest.mark.parametrize("position", [0, 31, 32, ACT_ONE_SIZE - 1])
async def test_flipped_bit_in_act_one_fails_the_responder(position: int) -> None:
    with trio.fail_after(DEADLINE):
        alice, bob = Identity.generate(), Identity.generate()
        client, server = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as nursery:

            async def initiator() -> None:
                tampering = TamperingStream(client, flip_at=position)
                await expect_error(
                    RemoteProtocolError, lambda: initiate(tampering, alice, bob.node_id)
                )

            nursery.start_soon(initiator)
            await expect_error(CryptoError, lambda: respond(server, bob))
            await server.aclose()


@pytest.mark.parametrize("position", [0, 31, 32, ACT_TWO_SIZE - 1])
async def test_flipped_bit_in_act_two_fails_the_initiator(position: int) -> None:
    with trio.fail_after(DEADLINE):
        alice, bob = Identity.generate(), Identity.generate()
        client, server = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as nursery:

            async def responder() -> None:
                tampering = TamperingStream(server, flip_at=position)
                await expect_error(RemoteProtocolError, lambda: respond(tampering, bob))

            nursery.start_soon(responder)
            await expect_error(CryptoError, lambda: initiate(client, alice, bob.node_id))
            await client.aclose()


@pytest.mark.parametrize(
    "position",
    [ACT_ONE_SIZE, ACT_ONE_SIZE + 47, ACT_ONE_SIZE + 48, ACT_ONE_SIZE + ACT_THREE_SIZE - 1],
    ids=["static-key-first", "static-key-tag", "node-id-first", "payload-tag"],
)
async def test_flipped_bit_in_act_three_fails_the_responder(position: int) -> None:
    with trio.fail_after(DEADLINE):
        alice, bob = Identity.generate(), Identity.generate()
        client, server = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(initiate, TamperingStream(client, position), alice, bob.node_id)
            await expect_error(CryptoError, lambda: respond(server, bob))


@pytest.mark.parametrize(
    ("side", "sent", "what"),
    [
        ("initiator", 0, "act one"),
        ("initiator", ACT_ONE_SIZE - 1, "act one"),
        ("responder", 20, "act two"),
        ("initiator", ACT_ONE_SIZE + 50, "act three"),
    ],
)
async def test_connection_closed_inside_the_handshake_is_a_remote_protocol_error(
    side: str, sent: int, what: str
) -> None:
    """The peer sends the first `sent` bytes of a real handshake, then hangs up."""
    with trio.fail_after(DEADLINE):
        alice, bob = Identity.generate(), Identity.generate()
        client, server = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as nursery:
            if side == "initiator":

                async def half_an_initiator() -> None:
                    initiator = HandshakeState.initiator(
                        alice.x25519_private_key(),
                        x25519_public_key(bob.node_id),
                        ephemeral_private=os.urandom(KEY_SIZE),
                    )
                    act_one = initiator.write_message(b"")
                    await client.send_all(act_one[:sent])
                    if sent > ACT_ONE_SIZE:
                        initiator.read_message(await receive_exactly(client, ACT_TWO_SIZE))
                        act_three = initiator.write_message(alice.node_id)
                        await client.send_all(act_three[: sent - ACT_ONE_SIZE])
                    await client.aclose()

                nursery.start_soon(half_an_initiator)
                error = await expect_error(RemoteProtocolError, lambda: respond(server, bob))
            else:

                async def half_a_responder() -> None:
                    responder = HandshakeState.responder(
                        bob.x25519_private_key(), ephemeral_private=os.urandom(KEY_SIZE)
                    )
                    responder.read_message(await receive_exactly(server, ACT_ONE_SIZE))
                    await server.send_all(responder.write_message(b"")[:sent])
                    await server.aclose()

                nursery.start_soon(half_a_responder)
                error = await expect_error(
                    RemoteProtocolError, lambda: initiate(client, alice, bob.node_id)
                )
        assert "handshake" in str(error)
        assert what in str(error)


async def receive_exactly(stream: trio.abc.Stream, size: int) -> bytes:
    received = b""
    while len(received) < size:
        chunk = await stream.receive_some(size - len(received))
        assert chunk, "closed early"
        received += chunk
    return received


async def test_garbage_before_the_handshake_fails_the_responder() -> None:
    with trio.fail_after(DEADLINE):
        alice, bob = Identity.generate(), Identity.generate()
        client, server = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as nursery:

            async def confused_client() -> None:
                await client.send_all(b"GET / HTTP/1.1\r\nHost: p2pchan\r\n\r\n")
                await expect_error(
                    RemoteProtocolError, lambda: initiate(client, alice, bob.node_id)
                )

            nursery.start_soon(confused_client)
            await expect_error(CryptoError, lambda: respond(server, bob))
            await server.aclose()


async def test_act_three_claiming_another_node_id_is_refused() -> None:
    """Mallory completes a real handshake with her own static key but claims Alice's node id."""
    with trio.fail_after(DEADLINE):
        alice, bob, mallory = Identity.generate(), Identity.generate(), Identity.generate()
        client, server = trio.testing.memory_stream_pair()
        impostor = HandshakeState.initiator(
            mallory.x25519_private_key(),
            x25519_public_key(bob.node_id),
            ephemeral_private=os.urandom(KEY_SIZE),
        )
        act_one = impostor.write_message(b"")
        await client.send_all(act_one)
        async with trio.open_nursery() as nursery:

            async def impostor_finishes() -> None:
                impostor.read_message(await receive_exactly(client, ACT_TWO_SIZE))
                await client.send_all(impostor.write_message(alice.node_id))

            nursery.start_soon(impostor_finishes)
            error = await expect_error(CryptoError, lambda: respond(server, bob))
        assert "does not match" in str(error)


# -- frames after the handshake ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("position", "part"),
    [
        (0, "length"),
        (HEADER_SIZE - 1, "length"),
        (HEADER_SIZE, "body"),
        (HEADER_SIZE + 5, "body"),
    ],
)
@pytest.mark.parametrize("sender", ["initiator", "responder"])
async def test_flipped_bit_in_a_frame_ends_the_connection(
    position: int, part: str, sender: str
) -> None:
    with trio.fail_after(DEADLINE):
        alice, bob = Identity.generate(), Identity.generate()
        client, server = trio.testing.memory_stream_pair()
        handshake_bytes = HANDSHAKE_SIZE if sender == "initiator" else ACT_TWO_SIZE
        flip_at = handshake_bytes + position
        if sender == "initiator":
            writer, reader = await handshake(TamperingStream(client, flip_at), server, alice, bob)
        else:
            reader, writer = await handshake(client, TamperingStream(server, flip_at), alice, bob)
        await writer.send([b"hello there", b"second"])
        await expect_error(CryptoError, reader.receive)
        # The connection is over: even intact frames after the bad one are refused.
        await writer.send([b"more"])
        await expect_error(CryptoError, reader.receive)


async def test_eof_inside_a_frame_is_a_remote_protocol_error() -> None:
    with trio.fail_after(DEADLINE):
        alice, bob = Identity.generate(), Identity.generate()
        to_bob, to_alice = await handshake(*trio.testing.memory_stream_pair(), alice, bob)
        frame = to_bob.cipher.encryptor.encrypt(b"a body that never fully arrives")
        await to_bob.stream.send_all(frame[: HEADER_SIZE + 3])
        await to_bob.aclose()
        error = await expect_error(RemoteProtocolError, to_alice.receive)
        assert "inside a frame" in str(error)


async def test_oversized_body_is_refused_before_anything_is_written() -> None:
    with trio.fail_after(DEADLINE):
        alice, bob = Identity.generate(), Identity.generate()
        to_bob, to_alice = await handshake(*trio.testing.memory_stream_pair(), alice, bob)
        await expect_error(
            LocalProtocolError, lambda: to_bob.send([b"fits", bytes(MAX_BODY_SIZE + 1)])
        )
        # Nothing of the refused batch went out, and the connection still works.
        await to_bob.send([b"after the refusal"])
        await to_bob.aclose()
        received: list[bytes] = []
        while bodies := await to_alice.receive():
            received += bodies
        assert received == [b"after the refusal"]
