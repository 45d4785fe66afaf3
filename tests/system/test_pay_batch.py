"""`p2pchan pay-batch` against real nodes: the summary of a good batch, bad lines refused before
anything is paid, failed payments counted by reason and kept in `payments`, and a node that goes
away mid-batch making the command fail fast, not hang."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import trio

from p2pchan.l1.client import L1Client
from p2pchan.types import Address
from p2pchan_cli.processes import p2pchan_argv
from tests.conftest import ProcessRegistry
from tests.system.support import Network, p2pchan, poll_until

pytestmark = pytest.mark.slow
DEADLINE = 120


async def two_nodes_with_a_channel(processes: ProcessRegistry, root: Path) -> tuple[Network, str]:
    """Alice, funded, with a channel open to Bob; returns the network and Bob's node id."""
    net = Network(processes, root)
    await net.start_l1(block_time=0.1)
    alice = await net.init_node("alice")
    bob = await net.init_node("bob")
    host, port = net.l1.split(":")
    async with L1Client.connect(host, int(port)) as client:
        await client.faucet(Address(bytes.fromhex(alice)), 100_000, wait=True)
    await net.start_node("alice")
    bob_node = await net.start_node("bob")
    peer = {"node_id": bob, "host": "127.0.0.1", "port": bob_node.ready["port"]}
    await net.rpc("alice", "connect", peer)
    await net.rpc("alice", "open", {"node_id": bob, "amount": 50_000, "settle_timeout": 40})
    return net, bob


async def test_a_batch_pays_every_line_and_sums_up(
    processes: ProcessRegistry, tmp_path: Path
) -> None:
    with trio.fail_after(DEADLINE):
        net, bob = await two_nodes_with_a_channel(processes, tmp_path)
        invoice = (await net.rpc("bob", "invoice", {"amount": 70}))["invoice"]
        lines = [{"to": bob, "amount": 3}] * 40 + [{"invoice": invoice}]
        batch = tmp_path / "batch.jsonl"
        batch.write_text("".join(json.dumps(line) + "\n" for line in lines))
        result = await p2pchan(
            "pay-batch",
            str(batch),
            "--concurrency",
            "8",
            "--datadir",
            str(tmp_path / "alice"),
            "--json",
        )
        summary = result.json()
        assert {k: summary[k] for k in ("count", "succeeded", "failed")} == {
            "count": 41,
            "succeeded": 41,
            "failed": 0,
        }
        assert summary["payments_per_s"] > 0 and summary["p50_ms"] <= summary["p99_ms"]
        received = [p for p in await net.rpc("bob", "payments") if p["status"] == "succeeded"]
        assert sum(p["amount"] for p in received) == 40 * 3 + 70


async def test_a_bad_line_is_refused_before_anything_is_paid(
    processes: ProcessRegistry, tmp_path: Path
) -> None:
    with trio.fail_after(DEADLINE):
        net, bob = await two_nodes_with_a_channel(processes, tmp_path)
        batch = tmp_path / "batch.jsonl"
        batch.write_text(
            json.dumps({"to": bob, "amount": 3}) + "\n" + '{"to": "zz", "amount": 1}\n'
        )
        result = await p2pchan("pay-batch", str(batch), "--datadir", str(tmp_path / "alice"))
        assert result.returncode == 1
        assert "batch.jsonl:2" in result.stderr and result.stderr.count("\n") == 1
        assert await net.rpc("alice", "payments") == []


async def test_failed_payments_are_summed_up_by_reason_and_kept_with_it(
    processes: ProcessRegistry, tmp_path: Path
) -> None:
    with trio.fail_after(DEADLINE):
        net, bob = await two_nodes_with_a_channel(processes, tmp_path)
        stranger = "ab" * 32  # no channel with it
        too_big = (await net.rpc("bob", "invoice", {"amount": 60_000}))["invoice"]
        lines = [{"to": bob, "amount": 3}] * 3 + [{"to": stranger, "amount": 1}] * 2
        lines.append({"invoice": too_big})
        batch = tmp_path / "batch.jsonl"
        batch.write_text("".join(json.dumps(line) + "\n" for line in lines))
        alice = str(tmp_path / "alice")
        result = await p2pchan("pay-batch", str(batch), "--datadir", alice, "--json")
        assert result.returncode == 1
        summary = json.loads(result.stdout)
        assert (summary["count"], summary["succeeded"], summary["failed"]) == (6, 3, 3)
        no_channel = "no usable channel with abababab…ababab"
        capacity = "insufficient capacity: 60000 wanted, 49991 available"
        assert summary["failure_reasons"] == {no_channel: 2, capacity: 1}
        assert result.stderr == (
            f"error: 3 failed and 0 pending of 6 payments; most often: {no_channel}\n"
        )
        # Refused before anything was signed, yet kept, each with its reason.
        failed = await net.rpc("alice", "payments", {"status": "failed"})
        assert sorted(p["error"] for p in failed) == [capacity, no_channel, no_channel]
        human = await p2pchan("pay-batch", str(batch), "--datadir", alice)
        assert "failures by reason:" in human.stdout and f"2  {no_channel}" in human.stdout


async def test_the_batch_fails_fast_when_the_node_goes_away(
    processes: ProcessRegistry, tmp_path: Path
) -> None:
    with trio.fail_after(DEADLINE):
        net, bob = await two_nodes_with_a_channel(processes, tmp_path)
        batch = tmp_path / "batch.jsonl"
        batch.write_text(
            "".join(json.dumps({"to": bob, "amount": 1}) + "\n" for _ in range(20_000))
        )
        command = await trio.lowlevel.open_process(
            p2pchan_argv("pay-batch", str(batch), "--datadir", str(tmp_path / "alice")),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            # Once Bob has been paid something, the batch is under way: kill Alice's node.
            async def bob_paid() -> bool:
                return bool(await net.rpc("bob", "payments"))

            await poll_until(bob_paid, "a first payment to reach Bob")
            alice = next(child for child in processes.children if child.name == "alice")
            alice.kill()
            with trio.fail_after(15):  # fails fast: it does not wait for 20,000 payments
                await command.wait()
            assert command.stderr is not None
            stderr = (await command.stderr.receive_some(65536)).decode()
            assert command.returncode == 1
            assert "node went away" in stderr and stderr.count("\n") == 1
        finally:
            command.kill()
            with trio.CancelScope(shield=True):
                await command.wait()
