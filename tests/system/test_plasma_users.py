"""Plasma from the users' side: an operator process and three node processes (each the user's
wallet and watcher) on a real layer 1.

Every scenario ends on layer 1: each node's account must have gained exactly what its wallet
owned on the child chain (exit bonds come back with paid exits). Covered:

- deposits, payments among the three (one with two inputs and change), exits paid only after
  the challenge period, and the CLI's JSON contract and one-line failures;
- a --dev node exiting an output it already spent: challenged by another node's watcher, its
  bond lost to the challenger, while the coin's new owner still leaves with it;
- a --dev operator withholding a block: every node finds the chain bad, stops using it, and
  exits everything it owned before the bad block (a payment in the withheld block stays its
  sender's);
- a minting operator that exits its minted coin: every honest exit is paid first, in full;
- kill -9 of the operator and of a node in the middle of a stream of payments: nothing lost.

Layer-1 blocks are short (0.2-0.25 s) and challenge periods the contract's minimum or close, so
exits are paid within seconds."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
import trio

from p2pchan.crypto.keys import KEY_FILE_NAME, load_key_file
from p2pchan.errors import P2pchanError, PlasmaError
from p2pchan.l1.client import L1Client
from p2pchan.l1.transactions import PlasmaFinalizeExits
from p2pchan.l1.wallet import Wallet
from p2pchan.net.rpc_client import RpcError
from p2pchan.plasma.client import OperatorClient
from p2pchan.plasma.exits import start_exit_call
from p2pchan.types import Address, PlasmaId
from p2pchan.wire.plasma import utxo_pos
from p2pchan_cli.processes import ChildProcess, plasma_operator_process
from tests.conftest import ProcessRegistry
from tests.system.support import Network, p2pchan

pytestmark = pytest.mark.slow

DEADLINE = 120
FUND = 10_000
CHALLENGE_PERIOD = 20
POLL_INTERVAL = 0.05
USERS = ("alice", "bob", "carol")


async def poll(condition: Callable[[], Awaitable[bool]]) -> None:
    """Poll until `condition()` holds, under the caller's deadline: the state lives in other
    processes (nodes, layer 1), which offer nothing to wait on from here."""
    while not await condition():  # noqa: ASYNC110
        await trio.sleep(POLL_INTERVAL)


class PlasmaNet(Network):
    """Layer 1, an operator and the users' nodes, each funded on layer 1 and joined."""

    def __init__(self, processes: ProcessRegistry, root: Path) -> None:
        super().__init__(processes, root)
        self.ids: dict[str, str] = {}
        self.operator: ChildProcess | None = None
        self.operator_args: tuple[str, ...] = ()

    @property
    def operator_address(self) -> str:
        assert self.operator is not None
        return f"{self.operator.ready['host']}:{self.operator.ready['port']}"

    @property
    def plasma_id(self) -> PlasmaId:
        assert self.operator is not None
        return PlasmaId(bytes.fromhex(self.operator.ready["plasma_id"]))

    def l1_client(self) -> AbstractAsyncContextManager[L1Client]:
        host, port = self.l1.rsplit(":", 1)
        return L1Client.connect(host, int(port))

    async def start_operator(self, *extra: str, port: int = 0) -> ChildProcess:
        self.operator_args = extra
        child = self.processes.add(
            plasma_operator_process(
                self.root / "operator",
                self.l1,
                "--listen",
                f"127.0.0.1:{port}",
                "--block-interval",
                "0.2",
                "--challenge-period",
                str(CHALLENGE_PERIOD),
                *extra,
            )
        )
        await child.start()
        self.operator = child
        return child

    async def restart_operator_after_kill_9(self) -> None:
        assert self.operator is not None
        port = int(self.operator.ready["port"])
        self.operator.kill()
        await self.operator.wait_exit()
        await self.start_operator(*self.operator_args, port=port)

    async def start_users(
        self, *, dev: tuple[str, ...] = (), withhold_timeout: int = 10
    ) -> dict[str, ChildProcess]:
        children = {}
        async with self.l1_client() as client:
            for name in USERS:
                self.ids[name] = await self.init_node(name)
                extra = ("--dev",) if name in dev else ()
                children[name] = await self.start_node(name, *extra)
                await client.faucet(self.address(name), FUND, wait=True)
        for name in USERS:
            await self.rpc(name, "plasma_join", self.join_params(withhold_timeout))
        return children

    def join_params(self, withhold_timeout: int) -> dict[str, Any]:
        host, port = self.operator_address.rsplit(":", 1)
        return {"host": host, "port": int(port), "withhold_timeout": withhold_timeout}

    def address(self, name: str) -> Address:
        return Address(bytes.fromhex(self.ids[name]))

    async def l1_balance(self, name: str) -> int:
        async with self.l1_client() as client:
            return (await client.account(self.address(name))).balance

    async def send(self, payer: str, payee: str, amount: int) -> dict[str, Any]:
        params = {"node_id": self.ids[payee], "amount": amount}
        return dict(await self.rpc(payer, "plasma_send", params))

    async def balance(self, name: str) -> dict[str, int]:
        return dict(await self.rpc(name, "plasma_balance"))

    async def status(self, name: str) -> dict[str, Any]:
        return dict(await self.rpc(name, "plasma_status"))

    async def until_spendable(self, name: str, amount: int) -> None:
        async def done() -> bool:
            return (await self.balance(name))["spendable"] == amount

        await poll(done)

    async def until_all_paid(self, names: tuple[str, ...]) -> None:
        """Until every exit of these nodes is paid (each node finalizes its own when due)."""

        async def done() -> bool:
            for name in names:
                sums = await self.balance(name)
                if sums["exiting"] or sums["pending"]:
                    return False
            return True

        await poll(done)


async def exit_all(net: PlasmaNet, names: tuple[str, ...]) -> dict[str, int]:
    """Every node exits everything; returns what each owned (its spendable balance)."""
    owned = {}
    for name in names:
        owned[name] = (await net.balance(name))["spendable"]
        await net.rpc(name, "plasma_exit", {"all": True})
    return owned


# -- a good chain ---------------------------------------------------------------------------


async def test_deposits_payments_and_exits_paid_after_the_challenge_period(
    processes: ProcessRegistry, tmp_path: Path
) -> None:
    with trio.fail_after(DEADLINE):
        net = PlasmaNet(processes, tmp_path)
        await net.start_l1(block_time=0.2)
        await net.start_operator()
        await net.start_users()
        alice = str(tmp_path / "alice")

        async def cli(*args: str) -> Any:
            return (await p2pchan("--datadir", alice, "plasma", *args, "--json")).json()

        joined = await cli("join", net.operator_address)  # again: the same chain, nothing new
        assert joined["plasma_id"] == net.plasma_id.hex() and joined["chain_ok"] is True
        assert {"plasma_id", "operator", "block", "chain_ok", "reason"} <= set(joined)
        deposit = await cli("deposit", "1000")
        assert set(deposit) >= {"utxo_pos"} and deposit["amount"] == 1000
        bob_deposit = await net.rpc("bob", "plasma_deposit", {"amount": 500})
        assert bob_deposit["utxo_pos"] != deposit["utxo_pos"]

        paid = await cli("send", net.ids["bob"], "300")
        assert paid["status"] == "confirmed" and paid["block"] % 1000 == 0
        assert set(paid) >= {"tx_hash", "block", "status"}
        await net.until_spendable("bob", 800)
        two_inputs = await net.send("bob", "carol", 700)  # 500 + 300 in, 100 change
        assert two_inputs["status"] == "confirmed"
        await net.until_spendable("carol", 700)
        assert (await net.send("carol", "alice", 200))["status"] == "confirmed"
        await net.until_spendable("alice", 900)
        assert await net.balance("bob") == {
            "spendable": 100,
            "pending": 0,
            "exiting": 0,
            "exited": 0,
        }
        listed = await cli("utxos")
        assert {o["status"] for o in listed} == {"spent", "spendable"}
        assert all(set(o) == {"utxo_pos", "amount", "block", "status"} for o in listed)
        assert sum(o["amount"] for o in listed if o["status"] == "spendable") == 900

        # Bad inputs: one line each, nothing changed.
        for args, code, words in (
            (("send", net.ids["bob"], "5000"), 1, "insufficient_funds"),
            (("exit", str(utxo_pos(1, 0, 0))), 1, "is not ours"),
            (("exit", str(paid["block"] * 10**9)), 1, "is not ours"),  # Bob's
            (("exit", str(paid["block"] * 10**9 + 7)), 1, "names no output"),
            (("deposit", "0"), 2, "AMOUNT must be"),
            (("exit",), 2, "give UTXO_POS or --all"),
            (("deposit", "50000"), 1, "insufficient_funds"),
            (("join", "127.0.0.1:1"), 1, "cannot reach the operator"),
        ):
            failed = await p2pchan("--datadir", alice, "plasma", *args)
            assert failed.returncode == code, (args, failed)
            assert failed.stderr.count("\n") == 1 and words in failed.stderr, (args, failed)
        unjoined = await net.init_node("dave")
        assert unjoined
        await net.start_node("dave")
        lonely = await p2pchan("--datadir", str(tmp_path / "dave"), "plasma", "status")
        assert lonely.returncode == 1 and "plasma join" in lonely.stderr
        assert (await net.balance("alice"))["spendable"] == 900

        exits = await cli("exit", "--all")
        assert [set(e) >= {"utxo_pos", "amount", "exitable_at"} for e in exits] == [True, True]
        assert sum(e["amount"] for e in exits) == 900
        async with net.l1_client() as client:
            started = (await client.status()).height
        for name in ("bob", "carol"):
            await net.rpc(name, "plasma_exit", {"all": True})
        await net.until_all_paid(USERS)
        async with net.l1_client() as client:
            assert (await client.status()).height >= started + CHALLENGE_PERIOD  # not sooner
        queue = await cli("exits")
        assert {e["status"] for e in queue} == {"paid"}
        assert all(
            set(e) >= {"utxo_pos", "owner", "amount", "exitable_at", "status"} for e in queue
        )
        assert await net.l1_balance("alice") == FUND - 1000 + 900
        assert await net.l1_balance("bob") == FUND - 500 + 100
        assert await net.l1_balance("carol") == FUND + 500


async def test_an_exit_of_a_spent_output_is_challenged_and_its_bond_lost(
    processes: ProcessRegistry, tmp_path: Path
) -> None:
    with trio.fail_after(DEADLINE):
        net = PlasmaNet(processes, tmp_path)
        await net.start_l1(block_time=0.2)
        await net.start_operator()
        await net.start_users(dev=("alice",))
        deposit = await net.rpc("alice", "plasma_deposit", {"amount": 400})
        assert (await net.send("alice", "bob", 400))["status"] == "confirmed"
        await net.until_spendable("bob", 400)
        async with net.l1_client() as client:
            bond = (await client.plasma_chain(net.plasma_id)).exit_bond  # type: ignore[union-attr]
        before = {name: await net.l1_balance(name) for name in USERS}
        # An honest node refuses; a --dev one cheats.
        with pytest.raises(RpcError, match="is not ours"):
            await net.rpc("alice", "plasma_exit", {"utxo_pos": deposit["utxo_pos"]})
        with pytest.raises(RpcError, match="--dev"):
            await net.rpc("bob", "plasma_exit", {"utxo_pos": deposit["utxo_pos"], "cheat": True})
        await net.rpc("alice", "plasma_exit", {"utxo_pos": deposit["utxo_pos"], "cheat": True})

        async def challenged() -> bool:
            exits = await net.rpc("bob", "plasma_exits")
            return [e["status"] for e in exits] == ["challenged"]

        await poll(challenged)
        after = {name: await net.l1_balance(name) for name in USERS}
        assert after["alice"] == before["alice"] - bond
        gains = {name: after[name] - before[name] for name in ("bob", "carol")}
        assert sorted(gains.values()) == [0, bond]  # one of the two watchers won the bond
        # The coin is Bob's: he leaves with it.
        await exit_all(net, ("bob",))
        await net.until_all_paid(("bob",))
        assert await net.l1_balance("bob") == after["bob"] + 400


# -- a cheating operator --------------------------------------------------------------------


async def test_a_withheld_block_makes_every_node_exit_what_it_owned_before_it(
    processes: ProcessRegistry, tmp_path: Path
) -> None:
    with trio.fail_after(DEADLINE):
        net = PlasmaNet(processes, tmp_path)
        await net.start_l1(block_time=0.2)
        await net.start_operator("--dev")
        await net.start_users(withhold_timeout=5)
        await net.rpc("alice", "plasma_deposit", {"amount": 500})
        await net.rpc("bob", "plasma_deposit", {"amount": 300})
        await net.rpc("carol", "plasma_deposit", {"amount": 50})
        assert (await net.send("alice", "bob", 200))["status"] == "confirmed"
        await net.until_spendable("bob", 500)
        operator_dir = str(tmp_path / "operator")
        withheld = await p2pchan("--datadir", operator_dir, "plasma", "attack", "withhold-next")
        assert withheld.returncode == 0
        # Bob pays Carol in the withheld block: he never sees it, never confirms it.
        in_withheld = await net.send("bob", "carol", 450)
        assert in_withheld["status"] == "submitted"
        for name in USERS:

            async def bad(name: str = name) -> bool:
                return not (await net.status(name))["chain_ok"]

            await poll(bad)
            status = await net.status(name)
            assert "withheld" in status["reason"] and status["bad_block"] == in_withheld["block"]
        with pytest.raises(RpcError, match="chain_bad"):
            await net.send("alice", "carol", 1)
        failed = await p2pchan("--datadir", str(tmp_path / "carol"), "plasma", "deposit", "5")
        assert failed.returncode == 1 and "chain_bad" in failed.stderr
        await net.until_all_paid(USERS)
        assert await net.l1_balance("alice") == FUND - 500 + 300
        assert await net.l1_balance("bob") == FUND - 300 + 500  # his payment stayed his
        assert await net.l1_balance("carol") == FUND  # her deposit back; Bob's payment: no


async def test_a_minting_operator_exits_after_every_honest_exit_is_paid(
    processes: ProcessRegistry, tmp_path: Path
) -> None:
    with trio.fail_after(DEADLINE):
        net = PlasmaNet(processes, tmp_path)
        await net.start_l1(block_time=0.2)
        await net.start_operator("--dev")
        await net.start_users()
        for name, amount in (("alice", 600), ("bob", 300), ("carol", 100)):
            await net.rpc(name, "plasma_deposit", {"amount": amount})
        assert (await net.send("alice", "carol", 250))["status"] == "confirmed"
        await net.until_spendable("carol", 350)
        operator_dir = tmp_path / "operator"
        minted = await p2pchan(
            "--datadir", str(operator_dir), "plasma", "attack", "mint", "5000", "--json"
        )
        bad_block = int(minted.json()["block"])
        # The operator exits its minted coin as soon as its block is on layer 1.
        olga = load_key_file(operator_dir / KEY_FILE_NAME)
        host, port = net.operator_address.rsplit(":", 1)
        async with OperatorClient.connect(host, int(port)) as operator:

            async def served() -> bool:
                try:
                    await operator.block(bad_block)
                except PlasmaError:  # not built or committed yet
                    return False
                return True

            await poll(served)
            block = await operator.block(bad_block)
        [mint_index] = [i for i, tx in enumerate(block.transactions) if not tx.signatures]
        mint_pos = utxo_pos(bad_block, mint_index, 0)
        call = start_exit_call(
            net.plasma_id, mint_pos, block.transactions[mint_index], block.tree(), ()
        )
        async with net.l1_client() as client:
            chain_id = (await client.status()).chain_id
            await client.faucet(olga.node_id, 1000, wait=True)
            operator_wallet = Wallet(client, olga, chain_id)
            await operator_wallet.send(call, wait=True)
            for name in USERS:

                async def bad(name: str = name) -> bool:
                    return not (await net.status(name))["chain_ok"]

                await poll(bad)
            await net.until_all_paid(USERS)
            record = await client.plasma_exit(net.plasma_id, mint_pos)
            assert record is not None and record.exitable_at >= max(
                e["exitable_at"] for e in await net.rpc("alice", "plasma_exits") if e["ours"]
            )
            await client.wait_for_height(record.exitable_at)
            await operator_wallet.send(PlasmaFinalizeExits(net.plasma_id, 16), wait=True)
            record = await client.plasma_exit(net.plasma_id, mint_pos)
            assert record is not None and record.paid == 0  # nothing left for it
        assert await net.l1_balance("alice") == FUND - 600 + 350
        assert await net.l1_balance("bob") == FUND - 300 + 300
        assert await net.l1_balance("carol") == FUND - 100 + 350


# -- crashes --------------------------------------------------------------------------------


async def test_kill_9_of_the_operator_and_of_a_node_mid_stream_loses_nothing(
    processes: ProcessRegistry, tmp_path: Path
) -> None:
    with trio.fail_after(DEADLINE * 2):
        net = PlasmaNet(processes, tmp_path)
        await net.start_l1(block_time=0.25)
        await net.start_operator()
        nodes = await net.start_users(withhold_timeout=CHALLENGE_PERIOD - 1)
        for name in USERS:
            await net.rpc(name, "plasma_deposit", {"amount": 1000})
        ring = {"alice": "bob", "bob": "carol", "carol": "alice"}

        async def stream(payer: str, stop: trio.Event) -> None:
            """Pay the next node 1 at a time until told to stop; failures while a process is
            down are expected (the payment is stored first and handed over later)."""
            while not stop.is_set():
                try:
                    await net.send(payer, ring[payer], 1)
                except (P2pchanError, OSError):
                    await trio.sleep(0.1)

        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            for payer in USERS:
                nursery.start_soon(stream, payer, stop)

            async def some_blocks(count: int) -> None:
                async with net.l1_client() as client:
                    await client.wait_for_height((await client.status()).height + count)

            await some_blocks(8)
            await net.restart_operator_after_kill_9()
            await some_blocks(8)
            nodes["bob"].kill()
            await nodes["bob"].wait_exit()
            nodes["bob"] = await net.start_node("bob")
            await some_blocks(8)
            stop.set()

        async def settled() -> bool:
            sums = [await net.balance(name) for name in USERS]
            return all(s["pending"] == 0 for s in sums)

        await poll(settled)
        for name in USERS:
            assert (await net.status(name))["chain_ok"], name
        owned = await exit_all(net, USERS)
        assert sum(owned.values()) == 3000  # every coin is someone's, none twice
        await net.until_all_paid(USERS)
        for name in USERS:
            assert await net.l1_balance(name) == FUND - 1000 + owned[name]
        log = (tmp_path / "bob" / "node.log").read_text()
        assert "plasma_caught_up" in log and json.dumps("critical") not in log


# -- the demo -------------------------------------------------------------------------------


def _demo_processes() -> list[str]:
    """Command lines of running processes started from a demo's temporary directory."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "p2pchan-demo-" in command:
            found.append(command)
    return found


async def test_the_demo_pays_across_hops_and_tells_the_plasma_story_leaving_nothing() -> None:
    with trio.fail_after(DEADLINE):
        result = await p2pchan("demo")
    assert result.returncode == 0, result.stderr
    assert "gossip taught Alice a route: alice → bob → carol → dave, fee 18" in result.stdout
    assert "bob is locked 2018, keeps 12, passes 2006 on" in result.stdout
    assert "the cheat gained Alice nothing" in result.stdout
    assert "nothing lost to the withheld block" in result.stdout
    assert "demo complete" in result.stdout
    assert not _demo_processes()
