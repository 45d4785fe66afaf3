"""Noise-encrypted message streams over a trio byte stream.

`initiate` and `respond` run the XK handshake with its fixed-size acts (48, 48 and 96 bytes; the
third carries the initiator's node id, which the responder checks against the static key it
received) and return a `SecureStream` that sends and receives whole message bodies in encrypted
frames. Timeouts belong to the caller (`trio.fail_after` around the handshake).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import trio

from p2pchan.crypto.keys import Identity, x25519_public_key
from p2pchan.crypto.noise import ACT_ONE_SIZE, ACT_THREE_SIZE, ACT_TWO_SIZE, HandshakeState
from p2pchan.crypto.transport import MAX_BODY_SIZE, TransportCipher
from p2pchan.errors import CryptoError, LocalProtocolError, RemoteProtocolError
from p2pchan.types import KEY_SIZE, Address, NodeId

RECEIVE_SIZE = 256 * 1024


async def _receive_exactly(stream: trio.abc.Stream, size: int, what: str) -> bytes:
    received = bytearray()
    while len(received) < size:
        chunk = await stream.receive_some(size - len(received))
        if not chunk:
            raise RemoteProtocolError(
                f"connection closed during the handshake ({what}: {len(received)} of {size} bytes)"
            )
        received += chunk
    return bytes(received)


class SecureStream:
    """Whole message bodies in and out of Noise frames. One sender at a time: the caller
    serialises `send` (encryption order is nonce order). Counts the encrypted bytes each way
    after the handshake (what `peers` reports as a session's traffic)."""

    def __init__(self, stream: trio.abc.Stream, cipher: TransportCipher, remote: NodeId) -> None:
        self.stream = stream
        self.cipher = cipher
        self.remote_node_id = remote
        self.bytes_sent = 0
        self.bytes_received = 0

    async def send(self, bodies: Sequence[bytes]) -> None:
        """Encrypt `bodies` as consecutive frames and write them with one call.

        A body over 65535 bytes refuses the whole batch (`LocalProtocolError`) before any of it
        is encrypted, so the nonces stay in step and the connection stays usable.
        """
        for body in bodies:
            if len(body) > MAX_BODY_SIZE:
                raise LocalProtocolError(
                    f"a frame body is at most {MAX_BODY_SIZE} bytes, this one is {len(body)}"
                )
        encrypt = self.cipher.encryptor.encrypt
        data = b"".join([encrypt(body) for body in bodies])
        await self.stream.send_all(data)
        self.bytes_sent += len(data)

    async def receive(self) -> list[bytes]:
        """The next bodies to arrive (at least one); an empty list means the peer closed."""
        while True:
            data = await self.stream.receive_some(RECEIVE_SIZE)
            self.bytes_received += len(data)
            if not data:
                if self.cipher.decryptor.buffered:
                    raise RemoteProtocolError("connection closed inside a frame")
                return []
            bodies = self.cipher.feed(data)
            if bodies:
                return bodies

    async def aclose(self) -> None:
        await self.stream.aclose()


async def initiate(
    stream: trio.abc.Stream, identity: Identity, remote_node_id: NodeId
) -> SecureStream:
    """Run the handshake as initiator towards `remote_node_id`."""
    handshake = HandshakeState.initiator(
        identity.x25519_private_key(),
        x25519_public_key(remote_node_id),
        ephemeral_private=os.urandom(KEY_SIZE),
    )
    await stream.send_all(handshake.write_message(b""))
    handshake.read_message(await _receive_exactly(stream, ACT_TWO_SIZE, "act two"))
    await stream.send_all(handshake.write_message(identity.node_id))
    return SecureStream(stream, TransportCipher.from_handshake(handshake), remote_node_id)


async def respond(stream: trio.abc.Stream, identity: Identity) -> SecureStream:
    """Run the handshake as responder; learn and check the initiator's node id."""
    handshake = HandshakeState.responder(
        identity.x25519_private_key(), ephemeral_private=os.urandom(KEY_SIZE)
    )
    handshake.read_message(await _receive_exactly(stream, ACT_ONE_SIZE, "act one"))
    await stream.send_all(handshake.write_message(b""))
    payload = handshake.read_message(await _receive_exactly(stream, ACT_THREE_SIZE, "act three"))
    if len(payload) != KEY_SIZE:
        raise RemoteProtocolError(f"act three must carry a 32-byte node id, not {len(payload)}")
    if x25519_public_key(payload) != handshake.remote_static:
        raise CryptoError("the initiator's node id does not match its Noise static key")
    remote = NodeId(Address(payload))
    return SecureStream(stream, TransportCipher.from_handshake(handshake), remote)
