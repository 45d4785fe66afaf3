"""Real node processes in a line of five (A - B - C - D - E): gossip teaches everyone the
network, an invoice is paid across four hops with the fee `route` predicted, a spontaneous
payment reaches a non-neighbour, and killing the middle node during a batch of payments leaves
every payment final with the payer's and the payee's books agreeing.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from p2pchan.crypto.keys import KEY_FILE_NAME, Identity, write_key_file
from p2pchan.l1.client import L1Client
from p2pchan.types import Address
from p2pchan_cli.processes import ChildProcess
from tests.conftest import ProcessRegistry
from tests.system.support import Network, poll_until

pytestmark = pytest.mark.slow

NAMES = ("a", "b", "c", "d", "e")
FUND = 1_000_000
DEPOSIT = 200_000
SETTLE_TIMEOUT = 60  # blocks of 0.2 s: a lock lives at most 50 blocks (10 s)
DEADLINE = 150
FAST_RECONNECT = ("--reconnect-max", "0.5")


@dataclass
class Line:
    net: Network
    ids: dict[str, str]
    children: dict[str, ChildProcess]

    async def rpc(self, name: str, method: str, params: dict[str, Any] | None = None) -> Any:
        return await self.net.rpc(name, method, params)

    async def poll(self, name: str, method: str, holds: Any) -> Any:
        """Ask a node until its answer holds (under the test's deadline); the answer."""
        answers: list[Any] = []

        async def answered() -> bool:
            answers.append(await self.rpc(name, method))
            return bool(holds(answers[-1]))

        await poll_until(answered, f"{name}'s {method} to hold")
        return answers[-1]

    async def restart(self, name: str) -> None:
        port = self.children[name].ready["port"]
        self.children[name] = await self.net.start_node(
            name, "--listen", f"127.0.0.1:{port}", *FAST_RECONNECT
        )


async def start_line(
    processes: ProcessRegistry,
    root: Path,
    names: tuple[str, ...] = NAMES,
    extra: dict[str, tuple[str, ...]] | None = None,
) -> Line:
    """Nodes in a line, funded, each connected to the next and with a channel to it."""
    net = Network(processes, root)
    await net.start_l1(block_time=0.2)
    ids = {}
    for name in names:
        datadir = root / name
        datadir.mkdir(mode=0o700)
        identity = Identity.generate()
        write_key_file(datadir / KEY_FILE_NAME, identity)
        ids[name] = identity.node_id.hex()
    host, port = net.l1.rsplit(":", 1)
    async with L1Client.connect(host, int(port)) as client:
        for node_id in ids.values():
            await client.faucet(Address(bytes.fromhex(node_id)), FUND, wait=True)
    children: dict[str, ChildProcess] = {}
    async with trio.open_nursery() as nursery:

        async def start(name: str) -> None:
            options = (extra or {}).get(name, ())
            children[name] = await net.start_node(name, *FAST_RECONNECT, "--alias", name, *options)

        for name in names:
            nursery.start_soon(start, name)
    line = Line(net, ids, children)
    for left, right in itertools.pairwise(names):
        port = children[right].ready["port"]
        params = {"node_id": ids[right], "host": "127.0.0.1", "port": port}
        await line.rpc(left, "connect", params)
    for left, right in itertools.pairwise(names):
        params = {"node_id": ids[right], "amount": DEPOSIT, "settle_timeout": SETTLE_TIMEOUT}
        await line.rpc(left, "open", params)
    return line


async def test_five_nodes_learn_the_network_and_pay_across_hops(
    processes: ProcessRegistry, tmp_path: Path
) -> None:
    with trio.fail_after(DEADLINE):
        line = await start_line(processes, tmp_path)
        for name in NAMES:  # gossip reaches everyone: four channels, five nodes, fees known
            await line.poll(
                name,
                "graph",
                lambda g: (
                    len(g["channels"]) == 4
                    and all(c["node1_policy"] and c["node2_policy"] for c in g["channels"])
                ),
            )
        graph = await line.rpc("a", "graph")
        assert {n["alias"] for n in graph["nodes"]} == set(NAMES)

        # An invoice paid across four hops, with exactly the fee `route` predicted.
        predicted = await line.rpc("a", "route", {"node_id": line.ids["e"], "amount": 10_000})
        assert [hop["node_id"] for hop in predicted["hops"]] == [line.ids[n] for n in "bcde"]
        created = await line.rpc("e", "invoice", {"amount": 10_000, "description": "far"})
        paid = await line.rpc("a", "pay", {"invoice": created["invoice"]})
        assert paid["status"] == "succeeded", paid
        assert paid["fee"] == predicted["fee"] > 0
        assert [hop["node_id"] for hop in paid["route"]] == [line.ids[n] for n in "bcde"]
        received = await line.rpc("e", "payments", {"payment_hash": created["payment_hash"]})
        assert [(p["direction"], p["status"], p["amount"]) for p in received] == [
            ("in", "succeeded", 10_000)
        ]
        forwarded = await line.rpc("c", "payments", {"payment_hash": created["payment_hash"]})
        assert [(p["direction"], p["status"]) for p in forwarded] == [("forward", "succeeded")]

        # A spontaneous payment to a node that is not our neighbour.
        sent = await line.rpc("a", "send", {"node_id": line.ids["c"], "amount": 777})
        assert sent["status"] == "succeeded" and len(sent["route"]) == 2


async def test_killing_the_middle_node_during_a_batch_leaves_the_books_agreeing(
    processes: ProcessRegistry, tmp_path: Path
) -> None:
    with trio.fail_after(DEADLINE):
        line = await start_line(processes, tmp_path)
        await line.poll(
            "a",
            "graph",
            lambda g: (
                len(g["channels"]) == 4
                and all(c["node1_policy"] and c["node2_policy"] for c in g["channels"])
            ),
        )
        results: list[dict[str, Any]] = []
        first_wave = trio.Event()
        count = 150

        async def payer(worker: int) -> None:
            for index in range(worker, count, 10):
                params = {"node_id": line.ids["e"], "amount": 100 + index}
                try:
                    results.append(await line.rpc("a", "send", params))
                except Exception as error:  # refused before anything was signed
                    results.append({"status": "refused", "error": str(error)})
                if len(results) >= 20:
                    first_wave.set()

        async with trio.open_nursery() as nursery:
            for worker in range(10):
                nursery.start_soon(payer, worker)
            await first_wave.wait()  # payments are going through c: kill it now
            line.children["c"].kill()
            await line.children["c"].wait_exit()
            await line.restart("c")
        assert len(results) == count
        assert all(r["status"] in ("succeeded", "failed", "refused") for r in results)

        def final(payments: list[dict[str, Any]]) -> bool:
            return all(p["status"] != "pending" for p in payments)

        sent = await line.poll("a", "payments", final)
        got = await line.poll("e", "payments", final)
        paid = {p["payment_hash"]: p["amount"] for p in sent if p["status"] == "succeeded"}
        received = {p["payment_hash"]: p["amount"] for p in got if p["status"] == "succeeded"}
        assert paid == received
        assert len(paid) >= 20  # the first wave at least
        forwarded = await line.poll("c", "payments", final)
        assert {p["payment_hash"] for p in forwarded if p["status"] == "succeeded"} == set(paid)


async def test_a_mediator_withholding_the_unlock_loses_nothing_for_the_others(
    processes: ProcessRegistry, tmp_path: Path
) -> None:
    with trio.fail_after(DEADLINE):
        names = ("a", "b", "c")
        cheat = ("--dev", "--misbehave", "withhold-unlock")
        line = await start_line(processes, tmp_path, names, {"b": cheat})
        await line.poll(
            "a",
            "graph",
            lambda g: (
                len(g["channels"]) == 2
                and all(c["node1_policy"] and c["node2_policy"] for c in g["channels"])
            ),
        )
        sent = await line.rpc("a", "send", {"node_id": line.ids["c"], "amount": 5_000})
        assert sent["status"] == "succeeded"  # b claimed from a, and a has its proof
        # b never pays c off-chain: c registers the secret, closes, and is paid on layer 1.
        payments = await line.poll(
            "c", "payments", lambda ps: ps and all(p["status"] != "pending" for p in ps)
        )
        assert [(p["direction"], p["status"], p["amount"]) for p in payments] == [
            ("in", "succeeded", 5_000)
        ]

        def settled_with_the_payment(channels: list[dict[str, Any]]) -> bool:
            return any(c["state"] == "settled" and c["settled_balance"] == 5_000 for c in channels)

        await line.poll("c", "channels", settled_with_the_payment)
