"""The Plasma leg of `p2pchan demo`: a real `--dev` operator starts a child chain on the demo's
layer 1; two of the demo's nodes join it as wallets and watchers, deposit and pay each other on
the child chain; the operator withholds a block (with a payment of Bob's in it); both nodes
find the chain bad, exit everything they owned before it, and are paid on layer 1 exactly that
after the challenge period.

Kept apart from `demo.py` (the channel network's story) so each stays one story; the operator
process is appended to the caller's list so the demo's cleanup stops it with the rest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import trio

from p2pchan.errors import P2pchanError
from p2pchan.l1.client import L1Client
from p2pchan.net.rpc_client import RpcClient
from p2pchan.types import Address
from p2pchan_cli.processes import ChildProcess, plasma_operator_process

CHALLENGE_PERIOD = 20  # blocks: the contract's minimum
WITHHOLD_TIMEOUT = 5  # blocks a committed child block may stay unserved
POLL = 0.05


class Teller(Protocol):
    def step(self, text: str) -> None: ...

    def say(self, text: str) -> None: ...


class PlasmaUser(Protocol):
    alias: str
    node_id: str

    async def call(self, method: str, **params: Any) -> Any: ...


async def plasma_story(
    tour: Teller,
    workdir: Path,
    children: list[ChildProcess],
    l1: tuple[str, int],
    alice: PlasmaUser,
    bob: PlasmaUser,
) -> None:
    tour.step("Plasma: a --dev operator starts a child chain; Alice and Bob join it")
    operator = plasma_operator_process(
        workdir / "operator",
        f"{l1[0]}:{l1[1]}",
        "--listen",
        "127.0.0.1:0",
        "--block-interval",
        "0.2",
        "--challenge-period",
        str(CHALLENGE_PERIOD),
        "--dev",
    )
    children.append(operator)
    ready = await operator.start()
    for node in (alice, bob):
        await node.call(
            "plasma_join", host=ready["host"], port=ready["port"], withhold_timeout=WITHHOLD_TIMEOUT
        )
    tour.say(f"child chain {ready['plasma_id'][:16]}…: each node now watches every block")
    async with L1Client.connect(*l1) as client:
        before = {node.alias: await _l1_balance(client, node) for node in (alice, bob)}
        await _payments(tour, alice, bob)
        alice_has = await _spendable(alice, 450)
        bob_has = await _spendable(bob, 550)
        tour.say(f"spendable: Alice {alice_has}, Bob {bob_has}")

        tour.step("The operator withholds its next block: only its root reaches layer 1")
        await _call_operator(workdir / "operator", attack="withhold-next")
        result = await bob.call("plasma_send", node_id=alice.node_id, amount=350, wait=False)
        tour.say(f"Bob's payment of 350 to Alice goes into that block ({result['block']})")
        for node in (alice, bob):
            status = await _until_bad(node)
            tour.say(f"{node.alias.title()}'s watcher: chain bad, {status['reason']}")
        tour.say("both stop using the chain and exit at once everything they owned before it;")
        tour.say("Bob never saw his payment's block, so never confirmed it: its coins stay his")

        tour.step(f"After the {CHALLENGE_PERIOD}-block challenge period the exits are paid")
        for node in (alice, bob):
            await _until_exited(node)
        for node, owned, deposited in ((alice, alice_has, 800), (bob, bob_has, 200)):
            gained = await _l1_balance(client, node) - before[node.alias]
            tour.say(
                f"{node.alias.title()}: {deposited} deposited, {owned} owned on the child "
                f"chain, {gained + deposited} back on layer 1"
            )
            if gained + deposited != owned:
                raise P2pchanError(f"{node.alias} got {gained + deposited}, owned {owned}")
    tour.say("nothing lost to the withheld block")


async def _payments(tour: Teller, alice: PlasmaUser, bob: PlasmaUser) -> None:
    tour.step("Deposits from layer 1, then payments on the child chain")
    await alice.call("plasma_deposit", amount=800)
    await bob.call("plasma_deposit", amount=200)
    tour.say("Alice deposits 800, Bob 200 (layer-1 transactions)")
    for payer, payee, amount in ((alice, bob, 300), (alice, bob, 150), (bob, alice, 100)):
        result = await payer.call("plasma_send", node_id=payee.node_id, amount=amount)
        tour.say(
            f"{payer.alias.title()} → {payee.alias.title()} {amount:>3}: {result['status']} "
            f"in block {result['block']}"
        )
    tour.say("(each payer's watcher checked the block on layer 1 and signed a confirmation)")


async def _l1_balance(client: L1Client, node: PlasmaUser) -> int:
    return (await client.account(Address(bytes.fromhex(node.node_id)))).balance


async def _spendable(node: PlasmaUser, amount: int) -> int:
    """Once the node holds `amount` spendable (a received output needs its confirmation)."""
    with trio.fail_after(20):
        while True:  # another process's state: polled
            if (await node.call("plasma_balance"))["spendable"] == amount:
                return amount
            await trio.sleep(POLL)


async def _until_bad(node: PlasmaUser) -> dict[str, Any]:
    with trio.fail_after(20):
        while True:
            status: dict[str, Any] = await node.call("plasma_status")
            if not status["chain_ok"]:
                return status
            await trio.sleep(POLL)


async def _until_exited(node: PlasmaUser) -> None:
    with trio.fail_after(60):
        while True:
            balance = await node.call("plasma_balance")
            if not balance["exiting"] and not balance["pending"]:
                return
            await trio.sleep(2 * POLL)


async def _call_operator(datadir: Path, **params: Any) -> Any:
    async with RpcClient.connect(datadir) as rpc:
        return await rpc.call("plasma_attack", params)
