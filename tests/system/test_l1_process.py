"""The layer-1 node as a real process: the CLI contract, kill -9 durability, hostile bytes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from p2pchan.crypto.keys import Identity
from p2pchan.l1.client import L1Client
from p2pchan.l1.transactions import Transfer
from p2pchan.l1.wallet import Wallet
from p2pchan_cli.processes import ChildProcess, l1_process
from tests.conftest import ProcessRegistry
from tests.system.support import log_events, p2pchan

pytestmark = pytest.mark.slow
DEADLINE = 90


async def start_l1(processes: ProcessRegistry, datadir: Path, *extra: str) -> ChildProcess:
    child = processes.add(l1_process(datadir, "--port", "0", *extra))
    await child.start()
    return child


async def test_cli_contract_and_kill_9_keeps_every_balance(
    processes: ProcessRegistry, tmp_path: Path
) -> None:
    with trio.fail_after(DEADLINE):
        datadir = tmp_path / "chain"
        child = await start_l1(processes, datadir, "--block-time", "0", "--dev")
        ready = json.loads((datadir / "l1.json").read_text())
        assert set(ready) == {"host", "port", "pid", "chain_id"}
        assert ready["pid"] == child.process.pid  # type: ignore[union-attr]
        l1 = f"{ready['host']}:{ready['port']}"

        alice, bob = Identity.generate(), Identity.generate()
        granted = await p2pchan("l1", "faucet", alice.node_id.hex(), "1000", "--l1", l1, "--json")
        assert granted.json()["included"] is False  # block time 0: nothing until `mine`
        before = await p2pchan("--l1", l1, "l1", "balance", alice.node_id.hex(), "--json")
        assert before.json()["balance"] == 0
        assert (await p2pchan("l1", "mine", "--l1", l1, "--json")).json() == {"height": 1}
        after = (await p2pchan("l1", "balance", alice.node_id.hex(), "--l1", l1, "--json")).json()
        assert (after["balance"], after["nonce"]) == (1000, 0)

        async with L1Client.connect(ready["host"], ready["port"]) as client:
            wallet = Wallet(client, alice, client_chain := (await client.status()).chain_id)
            await wallet.send(Transfer(bob.node_id, 300))
            await client.mine()
            head_before = (await client.status()).head_hash

        child.kill()
        await child.wait_exit()
        restarted = await start_l1(processes, datadir, "--block-time", "0", "--dev")
        async with L1Client.connect(restarted.ready["host"], restarted.ready["port"]) as client:
            status = await client.status()
            assert (status.chain_id, status.height, status.head_hash) == (
                client_chain,
                2,
                head_before,
            )
            alice_account = await client.account(alice.node_id)
            assert (alice_account.balance, alice_account.nonce) == (700, 1)
            assert (await client.account(bob.node_id)).balance == 300


async def test_included_transactions_survive_kill_9_and_a_torn_tail_is_dropped(
    processes: ProcessRegistry, tmp_path: Path
) -> None:
    """Every transaction acknowledged as included is still there after kill -9, even with
    garbage (a torn write) appended to the block log."""
    with trio.fail_after(DEADLINE):
        datadir = tmp_path / "chain"
        child = await start_l1(processes, datadir, "--block-time", "0.02", "--dev")
        payer, payee = Identity.generate(), Identity.generate()
        acknowledged = 0
        async with L1Client.connect(child.ready["host"], child.ready["port"]) as client:
            await client.faucet(payer.node_id, 10_000, wait=True)
            wallet = Wallet(client, payer, (await client.status()).chain_id)
            for _ in range(25):
                result = await wallet.send(Transfer(payee.node_id, 1), wait=True)
                assert result.included
                acknowledged += 1
        child.kill()  # right after the last acknowledgement
        await child.wait_exit()
        async with await trio.open_file(datadir / "blocks.log", "ab") as log_file:
            await log_file.write(b"\x00\x00\x10\x00" + b"torn write")

        restarted = await start_l1(processes, datadir, "--block-time", "0.02", "--dev")
        async with L1Client.connect(restarted.ready["host"], restarted.ready["port"]) as client:
            assert (await client.account(payee.node_id)).balance == acknowledged
            assert (await client.account(payer.node_id)).nonce == acknowledged
        assert any(e["event"] == "block_log_torn_tail_dropped" for e in log_events(restarted))


async def test_garbage_on_the_port_drops_only_that_connection(
    processes: ProcessRegistry, tmp_path: Path
) -> None:
    with trio.fail_after(DEADLINE):
        child = await start_l1(processes, tmp_path / "chain", "--block-time", "0", "--dev")
        host, port = child.ready["host"], child.ready["port"]
        async with L1Client.connect(host, port) as bystander:
            hostile_inputs = [
                b"\x00\x00\x00\x05\xc1\xc1\xc1\xc1\xc1",  # a frame of bytes msgpack never uses
                b"\xff\xff\xff\xff",  # a frame length far over the limit
                b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # another protocol altogether
                b"\x00\x00\x00\x10\x92\x02",  # a truncated frame, then EOF
            ]
            for garbage in hostile_inputs:
                stream = await trio.open_tcp_stream(host, port)
                async with stream:
                    await stream.send_all(garbage)
                    await stream.send_eof()
                    assert await stream.receive_some(1024) == b""  # closed without a reply
            status = await bystander.status()  # the server serves everyone else
            assert status.height == 0
        drops = [e for e in log_events(child) if e["event"] == "l1_connection_dropped"]
        assert len(drops) == len(hostile_inputs)
        assert all(e["reason"] for e in drops)


async def test_cli_failures_are_one_line_and_non_zero(
    processes: ProcessRegistry, tmp_path: Path
) -> None:
    with trio.fail_after(DEADLINE):
        child = await start_l1(processes, tmp_path / "chain", "--block-time", "0")  # no --dev
        l1 = f"{child.ready['host']}:{child.ready['port']}"
        someone = Identity.generate().node_id.hex()
        amount_rule = "AMOUNT must be a whole number from 1 to 18446744073709551615, got"
        cases = [  # exit 1: the call failed; exit 2: the command line was wrong
            (("l1", "faucet", someone, "5", "--l1", l1), 1, "not_dev"),
            (("l1", "balance", "zz", "--l1", l1), 2, "NODE_ID must be 64 hex digits"),
            (("l1", "faucet", someone, "5x", "--l1", l1), 2, f"{amount_rule} 5x"),
            (("l1", "faucet", someone, str(2**64), "--l1", l1), 2, f"{amount_rule} {2**64}"),
            (("l1", "faucet", someone, "0", "--l1", l1), 2, f"{amount_rule} 0"),
            (("l1", "faucet", someone, "-5", "--l1", l1), 2, f"{amount_rule} -5"),
            (("l1", "status", "--l1", "127.0.0.1:1"), 1, "cannot reach layer 1"),
            (("l1", "status", "--l1", "nonsense"), 2, "HOST:PORT"),
            (("l1", "status", "--datadir", str(tmp_path / "none")), 1, "l1.json is missing"),
            (("l1", "start", "--datadir", str(tmp_path / "chain"), "--port", "0"), 1, "in use"),
        ]
        for args, code, reason in cases:
            result = await p2pchan(*args)
            assert result.returncode == code, (args, result)
            assert result.stderr.count("\n") == 1 and reason in result.stderr, (args, result)
