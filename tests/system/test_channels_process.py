"""Channels and payments between real node processes on a real layer-1 process.

Every scenario ends on layer 1: the test computes what each node must own from its deposits and
the payments that succeeded, and checks the exact balances and conservation (supply = balances +
contract holdings + fees burned). Covered:

- a thousand payments one way and five hundred the other, all at once, then a cooperative close;
  the payee's payment records match the payer's;
- kill -9 of the payer, or of the payee, in the middle of a stream of payments: after the
  restart every lock and record resolves and a payment succeeded for one side iff for the other;
- a payer down so long that the payee must claim on chain (register, close, settle, unlock);
- a cheating close (a --dev node leaving out its own sent proofs) answered with `update` by the
  partner, offline at the time (it catches up after a restart) or online;
- an honest force close, which needs no dispute;
- commands that must fail with one clear line: `--cheat` without --dev, `open` beyond the
  layer-1 balance or a second time, `send` beyond capacity, `pay` of garbage, of an expired
  invoice or of a paid one.

Blocks are short (0.1-0.2 s) and channels use short settle windows (20-50 blocks), so locks
expire and windows end within seconds."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from p2pchan.crypto.keys import KEY_FILE_NAME, Identity, write_key_file
from p2pchan.l1.client import L1Client
from p2pchan.net.rpc_client import RpcClient, RpcError
from p2pchan.types import Address, ChannelId
from p2pchan_cli.processes import ChildProcess
from tests.conftest import ProcessRegistry
from tests.system.support import CommandResult, Network, log_events, p2pchan, poll_until

pytestmark = pytest.mark.slow

DEADLINE = 90
FUND = 100_000  # layer-1 faucet grant per node
DEPOSIT = 10_000
SETTLE_TIMEOUT = 20  # blocks: the contract's minimum
# A node restarted after kill -9 needs a second or two (Python start-up, then catching up with
# layer 1), more on a loaded machine: the window it must dispute in is made a good deal longer.
RESTART_SETTLE_TIMEOUT = 40  # blocks of 0.2 s
STREAM_SETTLE_TIMEOUT = 50  # blocks of 0.1 s: payer locks then last 50 blocks too
FAST_RECONNECT = ("--reconnect-max", "1")


def l1_client(net: Network) -> AbstractAsyncContextManager[L1Client]:
    host, port = net.l1.rsplit(":", 1)
    return L1Client.connect(host, int(port))


@dataclass
class Pair:
    """Alice and Bob, funded on layer 1, connected, with (after `open`) one channel."""

    net: Network
    alice_id: str
    bob_id: str
    alice: ChildProcess
    bob: ChildProcess
    options: dict[str, tuple[str, ...]]
    channel_id: str = ""

    def datadir(self, name: str) -> str:
        return str(self.net.root / name)

    async def l1(self, call: Callable[[L1Client], Awaitable[Any]]) -> Any:
        async with l1_client(self.net) as client:
            return await call(client)

    async def l1_balance(self, node_id: str) -> int:
        account = await self.l1(lambda c: c.account(Address(bytes.fromhex(node_id))))
        return int(account.balance)

    async def channel(self, name: str) -> dict[str, Any]:
        channel = await self._find_channel(name)
        assert channel is not None, f"{name} does not know channel {self.channel_id}"
        return channel

    async def _find_channel(self, name: str) -> dict[str, Any] | None:
        channels = await self.net.rpc(name, "channels")
        found = [c for c in channels if c["channel_id"] == self.channel_id]
        return dict(found[0]) if found else None

    async def wait_channel(self, name: str, matches: Callable[[dict[str, Any]], bool]) -> None:
        """Poll until the node knows the channel and it `matches` (Bob learns of a channel
        Alice opened from layer 1, a moment after her)."""

        async def holds() -> bool:
            channel = await self._find_channel(name)
            return channel is not None and matches(channel)

        await poll_until(holds, f"{name}'s view of channel {self.channel_id[:8]}")

    async def open(
        self, amount: int = DEPOSIT, settle_timeout: int = SETTLE_TIMEOUT
    ) -> dict[str, Any]:
        """Alice opens a channel to Bob with `amount` (waits until Bob sees it open too)."""
        params = {"node_id": self.bob_id, "amount": amount, "settle_timeout": settle_timeout}
        opened = await self.net.rpc("alice", "open", params)
        self.channel_id = opened["channel_id"]
        await self.wait_channel("bob", lambda c: c["state"] == "open")
        return dict(opened)

    async def restart(self, name: str) -> ChildProcess:
        """Start a killed node again on the same data dir, port and options."""
        old = self.alice if name == "alice" else self.bob
        port = old.ready["port"]
        options = self.options[name]
        child = await self.net.start_node(name, "--listen", f"127.0.0.1:{port}", *options)
        if name == "alice":
            self.alice = child
        else:
            self.bob = child
        return child

    async def wait_no_pending_locks(self) -> None:
        """Wait until no lock is pending on either side of the channel."""
        for name in ("alice", "bob"):
            await self.wait_channel(name, lambda c: c["pending_locks"] == 0)

    async def assert_layer1(self, alice_gets: int, bob_gets: int) -> None:
        """Exact balances after every channel settled, and conservation of the supply."""
        status = await self.l1(lambda c: c.status())
        assert status.burned == 0  # fees are zero on this chain: the arithmetic below is exact
        balances = (await self.l1_balance(self.alice_id), await self.l1_balance(self.bob_id))
        assert balances == (FUND + alice_gets, FUND + bob_gets)
        assert status.contract_holdings == 0
        assert status.supply == 2 * FUND == sum(balances) + status.contract_holdings


async def start_pair(
    processes: ProcessRegistry,
    root: Path,
    *,
    block_time: float = 0.2,
    alice_dev: bool = True,
    bob_extra: tuple[str, ...] = (),
) -> Pair:
    """Layer 1, Alice and Bob funded with FUND each, started and connected."""
    net = Network(processes, root)
    await net.start_l1(block_time=block_time)
    ids: dict[str, str] = {}
    for name in ("alice", "bob"):
        # `node init` itself is tested in test_node_process; here the key is written directly.
        datadir = root / name
        datadir.mkdir(mode=0o700)
        identity = Identity.generate()
        write_key_file(datadir / KEY_FILE_NAME, identity)
        ids[name] = identity.node_id.hex()
    async with l1_client(net) as client:
        for node_id in ids.values():
            await client.faucet(Address(bytes.fromhex(node_id)), FUND, wait=True)
    options = {
        "alice": (*FAST_RECONNECT, *(("--dev",) if alice_dev else ())),
        "bob": (*FAST_RECONNECT, "--dev", *bob_extra),
    }
    children: dict[str, ChildProcess] = {}
    async with trio.open_nursery() as nursery:

        async def start(name: str) -> None:
            children[name] = await net.start_node(name, *options[name])

        nursery.start_soon(start, "alice")
        nursery.start_soon(start, "bob")
    pair = Pair(net, ids["alice"], ids["bob"], children["alice"], children["bob"], options)
    params = {"node_id": pair.bob_id, "host": "127.0.0.1", "port": pair.bob.ready["port"]}
    await net.rpc("alice", "connect", params)
    await net.wait_connected("alice", pair.bob_id)
    await net.wait_connected("bob", pair.alice_id)
    return pair


async def payment_records(pair: Pair, name: str) -> list[dict[str, Any]]:
    return list(await pair.net.rpc(name, "payments"))


def succeeded(records: list[dict[str, Any]], direction: str) -> dict[str, int]:
    """payment_hash -> amount of the succeeded records in `direction`."""
    return {
        r["payment_hash"]: r["amount"]
        for r in records
        if r["direction"] == direction and r["status"] == "succeeded"
    }


def assert_one_line_failure(result: CommandResult, *fragments: str) -> None:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stderr.count("\n") == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def duties_included(child: ChildProcess, duty: str) -> list[dict[str, Any]]:
    return [
        e
        for e in log_events(child)
        if e["event"] == "chain_duty_included" and e.get("duty") == duty
    ]


async def test_a_thousand_payments_each_way_at_once_then_a_cooperative_close(
    processes: ProcessRegistry, tmp_path: Path
) -> None:
    with trio.fail_after(DEADLINE):
        pair = await start_pair(processes, tmp_path)
        await pair.open(DEPOSIT)
        bob_deposit = 5_000
        deposited = await pair.net.rpc(
            "bob", "deposit", {"channel_id": pair.channel_id, "total": bob_deposit}
        )
        assert deposited["our_deposit"] == bob_deposit
        await pair.wait_channel("alice", lambda c: c["capacity"] == DEPOSIT + bob_deposit)
        status = await pair.l1(lambda c: c.status())
        assert status.contract_holdings == DEPOSIT + bob_deposit
        balances = [await pair.l1_balance(node) for node in (pair.alice_id, pair.bob_id)]
        assert balances == [FUND - DEPOSIT, FUND - bob_deposit]
        assert status.supply == sum(balances) + status.contract_holdings + status.burned

        results: dict[str, Any] = {}

        async def stream(name: str, payee: str, amount: int, count: int) -> None:
            params = {"node_id": payee, "amount": amount, "count": count, "concurrency": 50}
            async with RpcClient.connect(tmp_path / name) as rpc:
                results[name] = await rpc.call("debug_send_many", params)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream, "alice", pair.bob_id, 3, 1000)
            nursery.start_soon(stream, "bob", pair.alice_id, 2, 500)
        assert (results["alice"]["succeeded"], results["alice"]["failed"]) == (1000, 0)
        assert (results["bob"]["succeeded"], results["bob"]["failed"]) == (500, 0)

        await pair.wait_no_pending_locks()
        alice_net = -3 * 1000 + 2 * 500
        listed = await p2pchan("--datadir", pair.datadir("alice"), "channels", "--json")
        (alice_channel,) = listed.json()
        assert set(alice_channel) >= {
            "channel_id",
            "peer",
            "state",
            "capacity",
            "local_balance",
            "remote_balance",
            "pending_locks",
        }
        bob_channel = await pair.channel("bob")
        assert (alice_channel["state"], alice_channel["peer"]) == ("open", pair.bob_id)
        assert (
            alice_channel["local_balance"] == DEPOSIT + alice_net == bob_channel["remote_balance"]
        )
        assert bob_channel["local_balance"] == bob_deposit - alice_net
        assert bob_channel["local_balance"] == alice_channel["remote_balance"]

        # The payee's records match the payer's, both ways, and nothing stays pending.
        alice_records = await payment_records(pair, "alice")
        bob_records = await payment_records(pair, "bob")
        assert not [r for r in alice_records + bob_records if r["status"] != "succeeded"]
        assert succeeded(alice_records, "out") == succeeded(bob_records, "in")
        assert succeeded(bob_records, "out") == succeeded(alice_records, "in")
        assert sorted(succeeded(alice_records, "out").values()) == [3] * 1000
        assert sorted(succeeded(bob_records, "out").values()) == [2] * 500

        closed = await p2pchan("--datadir", pair.datadir("alice"), "close", pair.channel_id)
        assert closed.returncode == 0, closed.stderr
        await pair.wait_channel("bob", lambda c: c["state"] == "settled")
        await pair.assert_layer1(alice_net, -alice_net)


async def wait_disconnected(net: Network, name: str, peer: str) -> None:
    async def gone() -> bool:
        peers = await net.rpc(name, "peers")
        return not any(p["node_id"] == peer and p["connected"] for p in peers)

    await poll_until(gone, f"{name} to show {peer[:8]} disconnected")


async def stream_to_bob(pair: Pair) -> None:
    """3,000 payments of 2 from Alice to Bob, 50 at a time, until done or Alice dies."""
    params = {"node_id": pair.bob_id, "amount": 2, "count": 3000, "concurrency": 50}
    with contextlib.suppress(RpcError):  # the connection is lost when Alice dies
        await pair.net.rpc("alice", "debug_send_many", params)


async def kill_alice_mid_stream(pair: Pair) -> None:
    """Stream payments to Bob and kill Alice once he holds locks of hers, or once the stream
    ended (quick, it can slip between two polls: the caller then tries again)."""
    streamed = trio.Event()

    async def stream() -> None:
        await stream_to_bob(pair)
        streamed.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream)
        await pair.wait_channel("bob", lambda c: c["pending_locks"] > 0 or streamed.is_set())
        pair.alice.kill()
        await pair.alice.wait_exit()


async def agreed_amount_paid(pair: Pair) -> int:
    """Once every lock and payment record is final on both sides: check that a payment
    succeeded for Alice iff it did for Bob, and return the amount paid."""

    async def resolved() -> bool:
        for name in ("alice", "bob"):
            if (await pair.channel(name))["pending_locks"]:
                return False
            if any(r["status"] == "pending" for r in await payment_records(pair, name)):
                return False
        return True

    await poll_until(resolved, "every lock and payment record final on both sides")
    alice_records = await payment_records(pair, "alice")
    bob_records = await payment_records(pair, "bob")
    sent = {r["payment_hash"]: r for r in alice_records if r["direction"] == "out"}
    received = {r["payment_hash"]: r for r in bob_records if r["direction"] == "in"}
    assert set(received) <= set(sent)  # Bob never accepted a lock Alice has no record of
    for payment_hash, record in sent.items():
        # A payment Bob has no record of never reached him: it must have failed for Alice.
        theirs = received.get(payment_hash, {"status": "failed", "amount": record["amount"]})
        assert (record["status"], record["amount"]) == (theirs["status"], theirs["amount"])
    paid = sum(succeeded(alice_records, "out").values())
    assert paid == sum(succeeded(bob_records, "in").values())
    return paid


@pytest.mark.parametrize("victim", ["alice", "bob"], ids=["payer_killed", "payee_killed"])
async def test_a_node_killed_mid_stream_restarts_and_both_sides_agree(
    processes: ProcessRegistry, tmp_path: Path, victim: str
) -> None:
    with trio.fail_after(DEADLINE):
        pair = await start_pair(processes, tmp_path, block_time=0.1)
        # Bob registers the secret of a lock of Alice's he holds only reveal_timeout (10)
        # blocks before it expires: with 50-block locks (5 s), a restart never needs that.
        await pair.open(DEPOSIT, STREAM_SETTLE_TIMEOUT)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream_to_bob, pair)
            await pair.wait_channel("bob", lambda c: c["local_balance"] >= 2 * 200)
            child = pair.alice if victim == "alice" else pair.bob
            child.kill()
            await child.wait_exit()
            await pair.restart(victim)  # Alice's stream, if she survived, carries on
        await pair.net.wait_connected("alice", pair.bob_id)

        paid = await agreed_amount_paid(pair)
        assert paid >= 2 * 200
        alice_channel, bob_channel = await pair.channel("alice"), await pair.channel("bob")
        if alice_channel["state"] == "open":
            assert alice_channel["local_balance"] == DEPOSIT - paid
            assert bob_channel["local_balance"] == paid
            assert alice_channel["remote_balance"] == paid
            assert bob_channel["remote_balance"] == DEPOSIT - paid
            await pair.net.rpc("alice", "close", {"channel_id": pair.channel_id})
        # Else Bob closed on chain: he must if Alice was down (a very slow restart) for
        # reveal_timeout blocks after he registered a secret (see the next test).
        await pair.wait_channel("alice", lambda c: c["state"] == "settled")
        await pair.wait_channel("bob", lambda c: c["state"] == "settled")
        await pair.assert_layer1(-paid, paid)


async def test_a_payer_down_too_long_leaves_the_payee_to_claim_on_chain(
    processes: ProcessRegistry, tmp_path: Path
) -> None:
    with trio.fail_after(DEADLINE):
        pair = await start_pair(processes, tmp_path, block_time=0.1)
        await pair.open(DEPOSIT, SETTLE_TIMEOUT)  # locks of 20 blocks (2 s)

        # Kill Alice while Bob holds locks of hers whose secrets he revealed. Her locks reach
        # him in batches, and between an unlock and the next batch he holds none: if he held
        # none when the connection ended (by then he has handled all she sent), again.
        while True:
            await kill_alice_mid_stream(pair)
            await wait_disconnected(pair.net, "bob", pair.alice_id)
            if (await pair.channel("bob"))["pending_locks"]:
                break
            await pair.restart("alice")
            await pair.net.wait_connected("alice", pair.bob_id)

        # While she is down, Bob registers the secrets (reveal_timeout blocks before the locks
        # expire), closes (reveal_timeout blocks later, still not unlocked), settles, and
        # unlocks on chain once the locks expired.
        await pair.wait_channel(
            "bob", lambda c: c["state"] == "settled" and c["pending_locks"] == 0
        )
        assert [len(duties_included(pair.bob, duty)) for duty in ("close", "unlock")] == [1, 1]
        assert duties_included(pair.bob, "register")

        # Back, Alice learns from layer 1 that those payments succeeded.
        await pair.restart("alice")
        paid = await agreed_amount_paid(pair)
        assert (await pair.channel("alice"))["state"] == "settled"
        await pair.assert_layer1(-paid, paid)


@pytest.mark.parametrize("bob_offline", [True, False], ids=["partner_offline", "partner_online"])
async def test_a_cheating_close_is_disputed_and_the_partner_gets_everything_owed(
    processes: ProcessRegistry, tmp_path: Path, bob_offline: bool
) -> None:
    with trio.fail_after(DEADLINE):
        pair = await start_pair(processes, tmp_path)
        await pair.open(DEPOSIT, RESTART_SETTLE_TIMEOUT if bob_offline else SETTLE_TIMEOUT)
        sent = await p2pchan(
            "--datadir", pair.datadir("alice"), "send", pair.bob_id, "1000", "--json"
        )
        assert sent.json()["status"] == "succeeded"
        for payer, payee, amount in (("alice", pair.bob_id, 234), ("bob", pair.alice_id, 100)):
            result = await pair.net.rpc(payer, "send", {"node_id": payee, "amount": amount})
            assert result["status"] == "succeeded"
        owed_to_bob = 1000 + 234 - 100
        await pair.wait_no_pending_locks()

        if bob_offline:
            pair.bob.kill()
            await pair.bob.wait_exit()
        closing = await p2pchan(
            "--datadir",
            pair.datadir("alice"),
            "close",
            pair.channel_id,
            "--force",
            "--cheat",
            "--no-wait",
        )
        assert closing.returncode == 0, closing.stderr
        channel_id = ChannelId(bytes.fromhex(pair.channel_id))

        async def closed_on_chain() -> bool:
            record = await pair.l1(lambda c: c.channel(channel_id))
            return record is not None and record.close_block > 0

        await poll_until(closed_on_chain, "the cheating close on layer 1")
        if bob_offline:
            # Bob stays down for a few blocks of the window, then catches up. Meanwhile layer 1
            # holds the attack: Bob's proof (it favours Alice), none of hers.
            record = await pair.l1(lambda c: c.channel(channel_id))
            await pair.l1(lambda c: c.wait_for_height(record.close_block + 3))
            record = await pair.l1(lambda c: c.channel(channel_id))
            assert record.participant_a.hex() == pair.alice_id
            assert (record.proof_a.nonce, record.proof_b.nonce > 0) == (0, True)
            await pair.restart("bob")

        await pair.wait_channel("bob", lambda c: c["state"] == "settled")
        await pair.wait_channel("alice", lambda c: c["state"] == "settled")
        assert len(duties_included(pair.bob, "update")) == 1
        await pair.assert_layer1(-owed_to_bob, owed_to_bob)


async def test_an_honest_force_close_needs_no_dispute(
    processes: ProcessRegistry, tmp_path: Path
) -> None:
    with trio.fail_after(DEADLINE):
        pair = await start_pair(processes, tmp_path, alice_dev=False)
        await pair.open(DEPOSIT)
        # Without --dev, the attack is refused before anything happens.
        cheat = await p2pchan(
            "--datadir", pair.datadir("alice"), "close", pair.channel_id, "--force", "--cheat"
        )
        assert_one_line_failure(cheat, "--dev")
        assert (await pair.channel("alice"))["state"] == "open"

        for payer, payee, amount in (("alice", pair.bob_id, 700), ("bob", pair.alice_id, 200)):
            result = await pair.net.rpc(payer, "send", {"node_id": payee, "amount": amount})
            assert result["status"] == "succeeded"
        await pair.wait_no_pending_locks()

        closed = await p2pchan(
            "--datadir", pair.datadir("alice"), "close", pair.channel_id, "--force", "--json"
        )
        assert closed.json()["state"] == "settled"
        await pair.wait_channel("bob", lambda c: c["state"] == "settled")
        assert duties_included(pair.bob, "update") == []  # nothing newer to submit
        assert duties_included(pair.alice, "update") == []
        await pair.assert_layer1(-500, 500)


async def test_misuse_fails_with_one_clear_line_and_the_channel_stays_usable(
    processes: ProcessRegistry, tmp_path: Path
) -> None:
    with trio.fail_after(DEADLINE):
        pair = await start_pair(processes, tmp_path)
        alice = ("--datadir", pair.datadir("alice"))

        too_much = await p2pchan(*alice, "open", pair.bob_id, str(FUND + 1))
        assert_one_line_failure(too_much, "layer-1 balance", str(FUND + 1))
        await pair.open(DEPOSIT)
        again = await p2pchan(*alice, "open", pair.bob_id, "100")
        assert_one_line_failure(again, "already open", pair.channel_id)
        with pytest.raises(RpcError, match="already open"):  # one channel per pair, either way
            await pair.net.rpc("bob", "open", {"node_id": pair.alice_id, "amount": 100})

        over_capacity = await p2pchan(*alice, "send", pair.bob_id, str(DEPOSIT + 1))
        assert_one_line_failure(over_capacity, "insufficient capacity")

        garbage = await p2pchan(*alice, "pay", "p2pc1garbage")
        assert_one_line_failure(garbage, "invoice")
        invoice = await pair.net.rpc("bob", "invoice", {"amount": 50, "expiry": 1})

        async def expired() -> bool:
            listed = await pair.net.rpc("bob", "invoices")
            return any(
                i["payment_hash"] == invoice["payment_hash"] and i["status"] == "expired"
                for i in listed
            )

        await poll_until(expired, "Bob's invoice to expire")
        late = await p2pchan(*alice, "pay", invoice["invoice"])
        assert_one_line_failure(late, "expired")

        # None of that touched the channel: it still pays (an invoice, once only), and closes
        # with exact balances.
        fresh = await pair.net.rpc("bob", "invoice", {"amount": 300, "description": "tea"})
        paid = (await p2pchan(*alice, "pay", fresh["invoice"], "--json")).json()
        assert (paid["status"], paid["amount"], paid["fee"]) == ("succeeded", 300, 0)
        assert hashlib.sha256(bytes.fromhex(paid["preimage"])).hexdigest() == fresh["payment_hash"]
        twice = await p2pchan(*alice, "pay", fresh["invoice"])
        assert_one_line_failure(twice, "already paid")
        await pair.wait_no_pending_locks()
        invoices = {i["payment_hash"]: i["status"] for i in await pair.net.rpc("bob", "invoices")}
        assert invoices == {invoice["payment_hash"]: "expired", fresh["payment_hash"]: "paid"}
        alice_records = await payment_records(pair, "alice")
        bob_records = await payment_records(pair, "bob")
        assert succeeded(alice_records, "out") == {fresh["payment_hash"]: 300}
        assert succeeded(bob_records, "in") == {fresh["payment_hash"]: 300}
        await pair.net.rpc("alice", "close", {"channel_id": pair.channel_id})
        await pair.wait_channel("bob", lambda c: c["state"] == "settled")
        await pair.assert_layer1(-300, 300)
