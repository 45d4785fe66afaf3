"""The node's Plasma shell in one trio run, against an in-process layer 1 and operator: a user
joins, deposits and pays; a watcher restarted on its database while the operator is gone
catches up from layer 1 and its own store alone (a block it checked once is never "withheld"
because the operator will not serve it again), and acts only once caught up; a receiver whose
operator withholds the sender's confirmation gets it from the sender's node directly."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from p2pchan.crypto.keys import Identity
from p2pchan.errors import PlasmaError
from p2pchan.l1.client import L1Client
from p2pchan.l1.server import L1Address, serve_l1
from p2pchan.l1.service import ChainService
from p2pchan.l1.wallet import Wallet
from p2pchan.net.chain_actions import ChainActions
from p2pchan.net.l1_link import L1Link
from p2pchan.net.plasma_wallets import PlasmaWallets
from p2pchan.net.plasma_watch import PlasmaWatch, SendToPeer
from p2pchan.plasma.operator_server import Operator, OperatorConfig, open_operator
from p2pchan.plasma.wallet_view import output_status
from p2pchan.storage.db import NodeDatabase
from p2pchan.types import Address, ChainId
from p2pchan.wire.peer_messages import PeerMessage
from p2pchan.wire.plasma import utxo_pos
from p2pchan.wire.plasma_messages import PlasmaMessage

DEADLINE = 30
ALICE, BOB = Identity(b"\x01" * 32), Identity(b"\x02" * 32)


@pytest.fixture
async def l1_ticking(tmp_path: Path) -> AsyncIterator[L1Address]:
    """A dev layer 1 sealing a block every 20 ms, Alice and Bob funded."""
    service = ChainService.open(tmp_path / "l1", block_time=0.02, dev=True)
    async with trio.open_nursery() as nursery:
        address = await nursery.start(serve_l1, service, "127.0.0.1", 0)
        async with L1Client.connect(address.host, address.port) as client:
            for who in (ALICE, BOB):
                await client.faucet(who.node_id, 10_000, wait=True)
        yield address
        nursery.cancel_scope.cancel()
    service.close()


@dataclass
class User:
    """What a node gives its Plasma wallets: a database, layer 1, the chain actions."""

    identity: Identity
    database: NodeDatabase
    wallets: PlasmaWallets
    scope: trio.CancelScope


async def start_user(
    nursery: trio.Nursery,
    l1: L1Address,
    identity: Identity,
    datadir: Path,
    send_to_peer: SendToPeer | None = None,
) -> User:
    await trio.Path(datadir).mkdir(parents=True, exist_ok=True)
    database = NodeDatabase.open(datadir)
    async with L1Client.connect(l1.host, l1.port) as client:
        chain_id = ChainId((await client.status()).chain_id)
    link = L1Link(l1.host, l1.port)
    wallet = Wallet(link, identity, chain_id)
    actions = ChainActions(wallet)
    wallets = PlasmaWallets(
        identity, chain_id, database, actions, wallet, link, send_to_peer=send_to_peer
    )
    scope = trio.CancelScope()

    async def run(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with scope:
            async with trio.open_nursery() as inner:
                inner.start_soon(link.run)
                await inner.start(actions.run)
                await inner.start(wallets.run)
                task_status.started()

    await nursery.start(run)
    return User(identity, database, wallets, scope)


async def start_operator(nursery: trio.Nursery, l1: L1Address, datadir: Path) -> Operator:
    config = OperatorConfig(
        datadir=datadir,
        l1_host=l1.host,
        l1_port=l1.port,
        block_interval=0.05,
        challenge_period=20,
    )
    operator = await open_operator(config)
    await nursery.start(operator.run)
    return operator


async def spendable(watch: PlasmaWatch, amount: int) -> None:
    await watch.wait_until(lambda: sum(a for _, a in watch.machine.spendable()) == amount)


async def test_a_restarted_watcher_catches_up_without_the_operator(
    l1_ticking: L1Address, tmp_path: Path
) -> None:
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            operator = await start_operator(nursery, l1_ticking, tmp_path / "op")
            alice = await start_user(nursery, l1_ticking, ALICE, tmp_path / "alice")
            bob = await start_user(nursery, l1_ticking, BOB, tmp_path / "bob")
            watches = []
            for user in (alice, bob):
                watch = await user.wallets.join("127.0.0.1", operator.port, 5)
                await watch.caught_up.wait()
                watches.append(watch)
            alice_watch, bob_watch = watches
            deposit = await alice_watch.deposit(300)
            assert deposit == utxo_pos(1, 0, 0)
            signed = await alice_watch.pay(BOB.node_id, 120)
            admitted = await alice_watch.submit(signed)
            assert admitted is not None and admitted.blknum == 1000
            await alice_watch.wait_until(
                lambda: alice_watch.sent_status(signed.tx_hash) == "confirmed"
            )
            await spendable(bob_watch, 120)
            await spendable(alice_watch, 180)

            # The operator goes away for good; Bob's node restarts on its database.
            operator.stop()
            bob.scope.cancel()
            bob.database.close()
            async with L1Client.connect(l1_ticking.host, l1_ticking.port) as client:
                height = (await client.status()).height
                await client.wait_for_height(height + 10)  # past the withhold timeout
            again = await start_user(nursery, l1_ticking, BOB, tmp_path / "bob")
            [restarted] = again.wallets.watches.values()
            with pytest.raises(PlasmaError) as early:
                restarted.usable()
            assert early.value.code == "catching_up"
            await restarted.caught_up.wait()
            assert restarted.machine.bad is None  # block 1000 came from Bob's own store
            assert restarted.machine.spendable() == [(utxo_pos(1000, 0, 0), 120)]
            assert output_status(restarted.machine, utxo_pos(1000, 0, 0)) == "spendable"
            # He can still leave with it, operator or not.
            await restarted.request_exits([utxo_pos(1000, 0, 0)])
            await restarted.wait_until(
                lambda: utxo_pos(1000, 0, 0) in restarted.machine.exits.exits
            )
            for user in (alice, again):
                user.scope.cancel()
            nursery.cancel_scope.cancel()
        operator.close()
        for user in (alice, again):
            user.database.close()


class Peers:
    """Users' nodes as peers of each other once `connect`ed: messages handed over directly."""

    def __init__(self) -> None:
        self.connected: dict[Address, PlasmaWallets] = {}

    def sender(self, me: Identity) -> SendToPeer:
        async def send(node_id: Address, message: PeerMessage) -> bool:
            other = self.connected.get(node_id)
            if other is None or me.node_id not in self.connected:
                return False
            assert isinstance(message, PlasmaMessage)
            await other.on_peer_message(Address(me.node_id), message)
            return True

        return send


async def test_a_confirmation_the_operator_withholds_comes_from_the_sender(
    l1_ticking: L1Address, tmp_path: Path
) -> None:
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            operator = await start_operator(nursery, l1_ticking, tmp_path / "op")
            operator.machine.confirmations_of = lambda tx_hash: []  # type: ignore[method-assign]
            peers = Peers()
            alice = await start_user(
                nursery, l1_ticking, ALICE, tmp_path / "alice", peers.sender(ALICE)
            )
            bob = await start_user(nursery, l1_ticking, BOB, tmp_path / "bob", peers.sender(BOB))
            alice_watch = await alice.wallets.join("127.0.0.1", operator.port, 5)
            bob_watch = await bob.wallets.join("127.0.0.1", operator.port, 5)
            for watch in (alice_watch, bob_watch):
                await watch.caught_up.wait()
            await alice_watch.deposit(100)
            signed = await alice_watch.pay(BOB.node_id, 100)
            assert await alice_watch.submit(signed) is not None
            await alice_watch.wait_until(
                lambda: alice_watch.sent_status(signed.tx_hash) == "confirmed"
            )
            position = utxo_pos(1000, 0, 0)
            await bob_watch.wait_until(lambda: position in bob_watch.machine.owned)
            async with L1Client.connect(l1_ticking.host, l1_ticking.port) as client:
                await client.wait_for_height((await client.status()).height + 5)
            assert output_status(bob_watch.machine, position) == "pending"  # withheld
            # Bob's node connects to Alice's: it asks her for the confirmation it lacks.
            peers.connected = {ALICE.node_id: alice.wallets, BOB.node_id: bob.wallets}
            await spendable(bob_watch, 100)
            for user in (alice, bob):
                user.scope.cancel()
            nursery.cancel_scope.cancel()
        operator.close()
        for user in (alice, bob):
            user.database.close()
