"""The layer-1 server and client over loopback TCP, in one trio run: ordering, waiting,
subscriptions, and hostile connections."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio
import trio.testing
from structlog.testing import capture_logs

from p2pchan.crypto.keys import Identity
from p2pchan.errors import ChainError
from p2pchan.l1.api import MAX_REQUEST_SIZE, REQUESTS, SubmitRequest
from p2pchan.l1.client import L1Client, L1Unavailable, subscribe
from p2pchan.l1.events import ChannelDeposited, ChannelOpened
from p2pchan.l1.transactions import ChannelDeposit, Transfer, sign_transaction
from p2pchan.l1.wallet import Wallet
from p2pchan.wire.codec import pack
from p2pchan.wire.framing import frame
from tests.conftest import RunningL1

DEADLINE = 20


async def poll_until(condition: Callable[[], bool], what: str) -> None:
    """Poll server state that has no event to wait on, failing after a deadline."""
    with trio.move_on_after(5):
        while not condition():  # noqa: ASYNC110 - nothing to wait on but the state itself
            await trio.sleep(0.005)
        return
    raise AssertionError(f"timed out waiting for {what}")


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
            frames = b"".join(
                frame(
                    REQUESTS.encode(
                        SubmitRequest(
                            nonce + 1,
                            sign_transaction(payer, chain_id, nonce, Transfer(payee.node_id, 1)),
                            False,
                        )
                    ),
                    max_size=MAX_REQUEST_SIZE,
                )
                for nonce in range(200)
            )
            stream = await trio.open_tcp_stream(address.host, address.port)
            async with stream:
                await stream.send_all(frames)  # one write: the server sees them back to back
                await poll_until(lambda: l1_server.service.pending_count == 200, "admission")
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
            wallet = Wallet(client, payer, (await client.status()).chain_id)
            answers: list[bool] = []

            async def pay_and_wait() -> None:
                answers.append((await wallet.send(Transfer(payee.node_id, 5), wait=True)).included)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(pay_and_wait)
                await poll_until(lambda: l1_server.service.pending_count == 1, "admission")
                tx_hash = next(iter(l1_server.service._pending_hashes))
                status = await client.transaction(tx_hash)
                assert (status.block, status.pending) == (None, True)
                assert answers == []  # not included yet: no block was mined
                await client.mine()
            assert answers == [True]
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
