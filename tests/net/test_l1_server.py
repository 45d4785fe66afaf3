"""The layer-1 server and client over loopback TCP, in one trio run: ordering, waiting,
subscriptions, and hostile connections. Where a test must know the server has admitted a
request, it reads the server's answers on a raw connection (answered in frame order)."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from structlog.testing import capture_logs

from p2pchan.crypto.hashing import sha256
from p2pchan.crypto.keys import Identity
from p2pchan.errors import ChainError
from p2pchan.l1.api import (
    MAX_REQUEST_SIZE,
    MAX_RESPONSE_SIZE,
    REQUESTS,
    RESPONSES,
    Request,
    SubmitRequest,
    SubmitResult,
    TransactionRequest,
    TransactionResult,
)
from p2pchan.l1.client import L1Client, L1Unavailable, subscribe
from p2pchan.l1.events import ChannelDeposited, ChannelOpened
from p2pchan.l1.transactions import ChannelDeposit, Transfer, sign_transaction
from p2pchan.l1.wallet import Wallet
from p2pchan.types import TxHash
from p2pchan.wire.codec import pack
from p2pchan.wire.framing import FrameDecoder, frame
from p2pchan.wire.records import Record
from tests.conftest import RunningL1

DEADLINE = 20


class RawL1:
    """A connection to the layer-1 server that frames requests and reads answers by hand."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._decoder = FrameDecoder(max_size=MAX_RESPONSE_SIZE)
        self._bodies: list[bytes] = []

    @staticmethod
    def framed(*requests: Request) -> bytes:
        return b"".join(frame(REQUESTS.encode(r), max_size=MAX_REQUEST_SIZE) for r in requests)

    async def answer(self) -> Record:
        """The next answer the server sent."""
        while not self._bodies:
            data = await self.stream.receive_some(65536)
            assert data, "the server closed the connection"
            self._bodies += self._decoder.feed(data)
        answer = RESPONSES.decode(self._bodies.pop(0))
        assert isinstance(answer, Record), answer
        return answer


async def funded(client: L1Client, *identities: Identity, amount: int = 1_000) -> None:
    for identity in identities:
        await client.faucet(identity.node_id, amount)
    await client.mine()


async def test_pipelined_transactions_of_one_sender_are_admitted_in_order(
    l1_server: RunningL1,
) -> None:
    with trio.fail_after(DEADLINE):
        payer, payee = Identity.generate(), Identity.generate()
        address = l1_server.address
        async with L1Client.connect(address.host, address.port) as client:
            await funded(client, payer)
            chain_id = (await client.status()).chain_id
            frames = RawL1.framed(
                *(
                    SubmitRequest(
                        nonce + 1,
                        sign_transaction(payer, chain_id, nonce, Transfer(payee.node_id, 1)),
                        False,
                    )
                    for nonce in range(200)
                )
            )
            stream = await trio.open_tcp_stream(address.host, address.port)
            async with stream:
                await stream.send_all(frames)  # one write: the server sees them back to back
                raw = RawL1(stream)
                answers = [await raw.answer() for _ in range(200)]  # each once admitted
                assert [(type(a), a.request_id) for a in answers] == [
                    (SubmitResult, nonce + 1) for nonce in range(200)
                ]
                assert l1_server.service.pending_count == 200
            await client.mine()
            assert (await client.account(payee.node_id)).balance == 200
            assert (await client.account(payer.node_id)).nonce == 200


async def test_submit_with_wait_answers_only_once_the_block_is_durable(
    l1_server: RunningL1,
) -> None:
    with trio.fail_after(DEADLINE):
        payer, payee = Identity.generate(), Identity.generate()
        address = l1_server.address
        async with L1Client.connect(address.host, address.port) as client:
            await funded(client, payer)
            chain_id = (await client.status()).chain_id
            signed = sign_transaction(payer, chain_id, 0, Transfer(payee.node_id, 5))
            tx_hash = TxHash(sha256(signed.body))
            stream = await trio.open_tcp_stream(address.host, address.port)
            async with stream:
                # The submit that waits, then a question about it on the same connection. The
                # server admits in frame order and answers at once all but the waiting submit,
                # so the second answer coming first means: admitted, not answered.
                both = (SubmitRequest(1, signed, True), TransactionRequest(2, tx_hash))
                await stream.send_all(RawL1.framed(*both))
                raw = RawL1(stream)
                status = await raw.answer()
                assert isinstance(status, TransactionResult) and status.request_id == 2
                assert (status.block, status.pending) == (None, True)
                assert l1_server.service.pending_count == 1
                await client.mine()  # the block holding it: only now the submit is answered
                answer = await raw.answer()
            assert isinstance(answer, SubmitResult) and answer.request_id == 1
            assert (answer.tx_hash, answer.included) == (tx_hash, True)
            status = await client.transaction(tx_hash)
            assert (status.block, status.pending) == (2, False)
            block = await client.block(2)
            assert len(block.transactions) == 1


async def test_subscription_replays_history_then_follows_new_blocks(l1_server: RunningL1) -> None:
    with trio.fail_after(DEADLINE):
        alice, bob = Identity.generate(), Identity.generate()
        address = l1_server.address
        async with L1Client.connect(address.host, address.port) as client:
            await funded(client, alice, bob)
            wallet = Wallet(client, alice, (await client.status()).chain_id)
            channel_id, _ = await wallet.open_channel(bob.node_id, 20)
            await client.mine()  # block 2: the open
            async with subscribe(address.host, address.port, from_height=2) as notices:
                await wallet.send(ChannelDeposit(channel_id, alice.node_id, 100))
                await client.mine()  # block 3: the deposit, after we subscribed
                seen = []
                async for notice in notices:
                    seen.append((notice.header.height, notice.events))
                    if notice.header.height == 3:
                        break
        assert seen == [
            (2, (ChannelOpened(channel_id, alice.node_id, bob.node_id, 20),)),
            (3, (ChannelDeposited(channel_id, alice.node_id, 100),)),
        ]


async def test_rejections_carry_their_code(l1_server: RunningL1) -> None:
    with trio.fail_after(DEADLINE):
        poor = Identity.generate()
        address = l1_server.address
        async with L1Client.connect(address.host, address.port) as client:
            wallet = Wallet(client, poor, (await client.status()).chain_id)
            with pytest.raises(ChainError) as overdraft:
                await wallet.send(Transfer(Identity.generate().node_id, 1))
            assert overdraft.value.code == "insufficient_funds"
            with pytest.raises(ChainError) as too_many:
                await client.mine(10_001)
            assert too_many.value.code == "too_many_blocks"
            with pytest.raises(ChainError) as unknown:
                await client.block(99)
            assert unknown.value.code == "unknown_block"


async def test_hostile_connections_are_dropped_and_logged_while_others_are_served(
    l1_server: RunningL1,
) -> None:
    address = l1_server.address
    hostile = {
        "unknown even type": frame(pack([98, 1]), max_size=1024),
        "wrong field type": frame(pack([2, "one"]), max_size=1024),
        "too many fields": frame(pack([2, 1, 2]), max_size=1024),
        "not an array": frame(pack({"a": 1}), max_size=1024),
        "oversized frame": (MAX_REQUEST_SIZE + 1).to_bytes(4, "big"),
    }
    with trio.fail_after(DEADLINE), capture_logs() as logs:
        async with L1Client.connect(address.host, address.port) as bystander:
            for garbage in hostile.values():
                stream = await trio.open_tcp_stream(address.host, address.port)
                async with stream:
                    await stream.send_all(garbage)
                    assert await stream.receive_some(1024) == b""
            assert (await bystander.status()).height == 0
    drops = [entry for entry in logs if entry["event"] == "l1_connection_dropped"]
    assert len(drops) == len(hostile)


async def test_an_unknown_odd_request_is_skipped(l1_server: RunningL1) -> None:
    address = l1_server.address
    with trio.fail_after(DEADLINE):
        stream = await trio.open_tcp_stream(address.host, address.port)
        async with stream:
            odd = frame(pack([99, 1, "from a newer client"]), max_size=1024)
            status = frame(pack([2, 7]), max_size=1024)
            await stream.send_all(odd + status)
            reply = await stream.receive_some(65536)
            assert reply  # the status request after the unknown one was answered


async def test_a_lost_connection_fails_pending_calls_clearly(l1_server: RunningL1) -> None:
    address = l1_server.address
    with trio.fail_after(DEADLINE):
        async with L1Client.connect(address.host, address.port) as client:
            async with trio.open_nursery() as nursery:
                failures: list[str] = []

                async def wait_forever() -> None:
                    try:
                        await client.wait_for_height(1_000)
                    except L1Unavailable as error:
                        failures.append(error.code)

                nursery.start_soon(wait_forever)
                await trio.testing.wait_all_tasks_blocked()
                await client._stream.aclose()
            assert failures == ["unavailable"]
