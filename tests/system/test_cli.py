"""The CLI as a new user meets it, against real processes: the mistakes that used to lock funds
or print tracebacks get one clear line and change nothing; what goes on after a timeout is
said; failed payments are kept with their reason; `info`, `decode` and `payments --hash/--status`
answer what an lncli user asks first; the node logs what happened to payments and channels.

Covered:
- a port in use (`l1 start --port`, `node start --listen`): one line, exit 1;
- `open` to a node never connected: refused, layer 1 untouched; `open NODE_ID@HOST:PORT`
  connects first;
- `send` to a peer that went offline: fails at once (exit 1, not pending), nothing locked,
  recorded as failed with its reason, found by `payments --status` and `--hash`;
- `close --force --timeout` that runs out: says the close goes on and where it is;
- `decode` of a good, an expired and another network's invoice; `info` fields;
- tables at 80 columns from a real node; info-level log events on both nodes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from p2pchan.core.invoice import Invoice, encode_invoice
from p2pchan.crypto.keys import Identity
from p2pchan.l1.client import L1Client
from p2pchan.types import Address, ChainId, SecretHash
from p2pchan_cli.processes import ChildProcess
from tests.conftest import ProcessRegistry
from tests.system.support import CommandResult, Network, log_events, p2pchan, poll_until

pytestmark = pytest.mark.slow
DEADLINE = 120
FUND = 100_000


def one_line_failure(result: CommandResult, code: int = 1) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr
    return result.stderr[len("error: ") : -1]


def events(child: ChildProcess, name: str) -> list[dict[str, Any]]:
    return [e for e in log_events(child) if e["event"] == name]


async def test_a_port_in_use_is_one_line(processes: ProcessRegistry, tmp_path: Path) -> None:
    with trio.fail_after(DEADLINE):
        net = Network(processes, tmp_path)
        await net.start_l1()
        await net.init_node("node")
        node = await net.start_node("node")
        l1_port = net.l1.rsplit(":", 1)[1]
        taken = await p2pchan("l1", "start", "--datadir", str(tmp_path / "l1b"), "--port", l1_port)
        assert one_line_failure(taken) == (
            f"cannot listen on 127.0.0.1:{l1_port}: port {l1_port} is in use "
            "(choose another with --port; 0 picks a free one)"
        )
        await net.init_node("other")
        listen = f"127.0.0.1:{node.ready['port']}"
        datadir = str(tmp_path / "other")
        taken = await p2pchan(
            "node", "start", "--datadir", datadir, "--listen", listen, "--l1", net.l1
        )
        assert f"port {node.ready['port']} is in use (choose another with --listen" in (
            one_line_failure(taken)
        )


class Story:
    """Alice (funded) and Bob, started, not connected; helpers to drive them by the CLI."""

    def __init__(self, net: Network, alice: str, bob: str, children: dict[str, ChildProcess]):
        self.net = net
        self.alice_id = alice
        self.bob_id = bob
        self.children = children

    async def cli(self, name: str, *args: str, columns: int | None = None) -> CommandResult:
        env = None if columns is None else {"COLUMNS": str(columns)}
        return await p2pchan("--datadir", str(self.net.root / name), *args, env=env)

    async def json(self, name: str, *args: str) -> Any:
        return (await self.cli(name, *args, "--json")).json()

    async def account(self) -> tuple[int, int, int]:
        host, port = self.net.l1.rsplit(":", 1)
        async with L1Client.connect(host, int(port)) as client:
            account = await client.account(Address(bytes.fromhex(self.alice_id)))
        return account.balance, account.nonce, account.pending_nonce


async def start_story(processes: ProcessRegistry, root: Path) -> Story:
    net = Network(processes, root)
    await net.start_l1(block_time=0.2)
    alice, bob = await net.init_node("alice"), await net.init_node("bob")
    host, port = net.l1.rsplit(":", 1)
    async with L1Client.connect(host, int(port)) as client:
        await client.faucet(Address(bytes.fromhex(alice)), FUND, wait=True)
    children = {"alice": await net.start_node("alice"), "bob": await net.start_node("bob")}
    return Story(net, alice, bob, children)


async def test_safe_defaults_timeouts_records_and_logs(
    processes: ProcessRegistry, tmp_path: Path
) -> None:
    with trio.fail_after(DEADLINE):
        story = await start_story(processes, tmp_path)
        alice, bob = story.children["alice"], story.children["bob"]
        bob_at = f"{story.bob_id}@127.0.0.1:{bob.ready['port']}"

        # `open` to a node never connected: refused before layer 1 hears of it.
        before = await story.account()
        refused = await story.cli("alice", "open", story.bob_id, "10000")
        assert "not connected to" in one_line_failure(refused)
        assert await story.account() == before == (FUND, 0, 0)
        assert await story.net.rpc("alice", "channels") == []

        # NODE_ID@HOST:PORT connects first, then opens.
        opened = await story.json("alice", "open", bob_at, "10000", "--settle-timeout", "20")
        assert (opened["state"], opened["peer"], opened["local_balance"]) == (
            "open",
            story.bob_id,
            10000,
        )
        channel_id = opened["channel_id"]
        sent = await story.cli("alice", "send", story.bob_id, "100")
        assert sent.returncode == 0, sent.stderr
        assert "status        succeeded" in sent.stdout and "route         " in sent.stdout
        assert not any(word in sent.stdout for word in ("None", "[{", "True"))

        # `decode`: what an invoice asks for; an expired one and another network's refused.
        invoice = await story.net.rpc("bob", "invoice", {"amount": 700, "description": "tea"})
        decoded = await story.json("alice", "decode", invoice["invoice"])
        assert {k: decoded[k] for k in ("payee", "amount", "payment_hash", "description")} == {
            "payee": story.bob_id,
            "amount": 700,
            "payment_hash": invoice["payment_hash"],
            "description": "tea",
        }
        assert decoded["expiry_seconds"] == 3600
        # Bob's channel with alice is a way to reach him (alice's fees as gossip told him).
        [hint] = decoded["route_hints"]
        assert hint["node_id"] == story.alice_id and hint["channel_id"] == channel_id
        stranger = Identity.generate()
        foreign = Invoice(
            ChainId(bytes(32)), stranger.node_id, 5, SecretHash(bytes(32)), 0, 60, 11, "", b""
        )
        other_chain = await story.cli("alice", "decode", encode_invoice(stranger, foreign))
        assert "for another network" in one_line_failure(other_chain)
        short = await story.net.rpc("bob", "invoice", {"amount": 5, "expiry": 1})

        async def expired() -> bool:
            invoices = await story.net.rpc("bob", "invoices")
            return any(i["status"] == "expired" for i in invoices)

        await poll_until(expired, "Bob's invoice to expire")
        assert "has expired" in one_line_failure(
            await story.cli("alice", "decode", short["invoice"])
        )

        # Bob goes away: a payment to him fails at once, nothing is locked, and its reason kept.
        await bob.stop()

        async def bob_gone() -> bool:
            peers = await story.net.rpc("alice", "peers")
            return not any(p["connected"] for p in peers)

        await poll_until(bob_gone, "Alice to see Bob gone")
        offline = await story.cli("alice", "send", story.bob_id, "50", "--timeout", "30")
        reason = one_line_failure(offline)  # exit 1 at once, not 3 after waiting 30 s
        assert reason == f"peer {story.bob_id[:8]}…{story.bob_id[-6:]} is offline: nothing was sent"
        (channel,) = await story.net.rpc("alice", "channels")
        assert (channel["local_balance"], channel["pending_locks"]) == (9900, 0)
        (failed,) = await story.json("alice", "payments", "--status", "failed")
        assert (failed["amount"], failed["status"], failed["error"]) == (50, "failed", reason)
        found = await story.json("alice", "payments", "--hash", failed["payment_hash"][:10])
        assert [p["payment_hash"] for p in found] == [failed["payment_hash"]]
        listed = await story.cli("alice", "payments", columns=80)
        assert "is offline" in listed.stdout and "reason" in listed.stdout.splitlines()[0]
        assert max(len(line) for line in listed.stdout.splitlines()) <= 80

        # A forced close that --timeout cuts short goes on, and says so.
        closing = await story.cli("alice", "close", channel_id, "--force", "--timeout", "1")
        said = one_line_failure(closing)
        assert said.startswith("timed out after 1 s; the close goes on: channel ")
        assert "see `p2pchan channels`" in said

        async def settled() -> bool:
            listed = await story.net.rpc("alice", "channels")
            return bool(listed) and listed[0]["state"] == "settled"

        await poll_until(settled, "Alice's channel settled")
        table = await story.cli("alice", "channels", columns=80)
        assert table.returncode == 0 and "settled" in table.stdout and "9900" in table.stdout
        assert max(len(line) for line in table.stdout.splitlines()) <= 80

        # `info` counts the channels `channels` lists, settled included.
        info = await story.json("alice", "info")
        assert (info["channels"], info["channel_states"]) == (1, {"settled": 1})
        assert info["uri"] == f"{story.alice_id}@127.0.0.1:{alice.ready['port']}"
        assert info["version"] and isinstance(info["synced"], bool)
        assert info["l1_height"] >= info["block_height"]

        # What happened is in the logs at info level, with reasons.
        failures = events(alice, "rpc_call_failed")
        assert any("not connected to" in e["reason"] for e in failures)
        assert [e["amount"] for e in events(alice, "payment_sent")] == [100]
        assert [e["reason"] for e in events(alice, "payment_failed")] == [reason]
        assert [e["channel"] for e in events(alice, "channel_opened")] == [channel_id]
        assert [e["by"] for e in events(alice, "channel_funded")] == ["us"]
        (closed,) = events(alice, "channel_settled")
        assert (closed["channel"], closed["to_us"]) == (channel_id, 9900)
        assert [e["amount"] for e in events(bob, "payment_received")] == [100]
        # JSON lines carry the whole node id (a console shows its first digits).
        assert {e.get("node") for e in events(alice, "payment_sent")} == {story.alice_id}
