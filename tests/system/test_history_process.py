"""Payment history between real node processes: what a user sees of it across a crash, and
retention.

- A payer with many final payments (most in the payments table, the newest in the journal) and a
  few pending ones is killed with SIGKILL: after the restart the pending ones resume and end as
  they end for the payee, and paging through `payments` (by cursor or by offset) lists every
  record exactly once with the payee's status; `info` counts them; `payments --limit 20` says
  how to get the next page.
- A node started with `--keep-payments` drops records final for longer than that, but never a
  payment still pending: here one whose payee withholds the secret until the lock expires.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from p2pchan.net.rpc_client import RpcError
from p2pchan.wire.codec import unpack
from tests.conftest import ProcessRegistry
from tests.system.support import p2pchan, poll_until
from tests.system.test_channels_process import (
    DEPOSIT,
    STREAM_SETTLE_TIMEOUT,
    Pair,
    agreed_amount_paid,
    payment_records,
    start_pair,
    stream_to_bob,
)

pytestmark = pytest.mark.slow

DEADLINE = 120
EARLY = 1500  # payments made (and compacted into the table) before the crash


def pending_in_store(datadir: Path) -> set[str]:
    """The payment hashes a stopped node has stored as pending: in its payments table, or
    created and not made final in its journal (read as the restarted node will)."""
    connection = sqlite3.connect(datadir / "node.sqlite")
    try:
        rows = connection.execute("SELECT payment_hash, secret FROM payments WHERE status = 0")
        pending = {(h or hashlib.sha256(s).digest()).hex() for h, s in rows}
        for (blob,) in connection.execute("SELECT events FROM payment_journal ORDER BY id"):
            for event in unpack(blob, max_len=len(blob)):
                payment_hash, status, created = bytes(event[0]).hex(), event[6], event[2]
                if created is not None:
                    pending.add(payment_hash)
                elif status != "pending":
                    pending.discard(payment_hash)
        return pending
    finally:
        connection.close()


async def crash_with_payments_pending(pair: Pair) -> set[str]:
    """Kill Alice while she streams payments to Bob, until some are pending in her store at
    the moment she dies (their locks in flight); those payment hashes."""
    while True:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream_to_bob, pair)
            await pair.wait_channel("alice", lambda c: c["pending_locks"] > 0)
            pair.alice.kill()
            await pair.alice.wait_exit()
        pending = pending_in_store(Path(pair.datadir("alice")))
        if pending:
            return pending
        await pair.restart("alice")
        await pair.net.wait_connected("alice", pair.bob_id)


async def test_a_crashed_payer_resumes_its_pending_payments_and_lists_every_record_once(
    processes: ProcessRegistry, tmp_path: Path
) -> None:
    with trio.fail_after(DEADLINE):
        pair = await start_pair(processes, tmp_path, block_time=0.1)
        await pair.open(DEPOSIT, STREAM_SETTLE_TIMEOUT)
        params = {"node_id": pair.bob_id, "amount": 1, "count": EARLY, "concurrency": 100}
        assert (await pair.net.rpc("alice", "debug_send_many", params))["succeeded"] == EARLY
        counts = (await pair.net.rpc("alice", "info"))["payments"]
        assert counts["out"] == {"pending": 0, "succeeded": EARLY, "failed": 0}

        pending = await crash_with_payments_pending(pair)
        await pair.restart("alice")
        await pair.net.wait_connected("alice", pair.bob_id)
        paid = await agreed_amount_paid(pair)  # every record final, Alice's as Bob's

        records = await payment_records(pair, "alice", page=700)
        by_offset: list[dict[str, Any]] = []
        while len(
            page := await pair.net.rpc(
                "alice", "payments", {"limit": 700, "index_offset": len(by_offset)}
            )
        ):
            by_offset += page
        assert by_offset == records
        hashes = [r["payment_hash"] for r in records]
        assert len(set(hashes)) == len(hashes) > EARLY
        assert [r["index"] for r in records] == sorted((r["index"] for r in records), reverse=True)
        assert pending <= set(hashes)
        assert {r["status"] for r in records} <= {"succeeded", "failed"}
        assert sum(r["amount"] for r in records if r["status"] == "succeeded") == paid
        counts = (await pair.net.rpc("alice", "info"))["payments"]["out"]
        assert counts["pending"] == 0
        assert counts["succeeded"] + counts["failed"] == len(records)

        # A user's first look: one page, and how to ask for the next.
        first = await p2pchan("--datadir", pair.datadir("alice"), "payments", "--limit", "20")
        assert first.returncode == 0, first.stderr
        assert len(first.stdout.splitlines()) == 2 + 20  # a header and its rule, 20 payments
        assert (
            first.stderr
            == f"note: 20 shown, there may be more: add --cursor {records[19]['index']}\n"
        )
        one = await p2pchan(
            "--datadir", pair.datadir("alice"), "payments", "--hash", hashes[-1][:12], "--json"
        )
        assert [r["payment_hash"] for r in one.json()] == [hashes[-1]]


async def test_retention_drops_old_final_records_but_never_a_pending_payment(
    processes: ProcessRegistry, tmp_path: Path
) -> None:
    keep_seconds = 1.5
    with trio.fail_after(DEADLINE):
        pair = await start_pair(
            processes,
            tmp_path,
            block_time=0.2,
            alice_extra=("--keep-payments", str(keep_seconds / 86_400)),
            bob_extra=("--misbehave", "withhold-reveal"),
        )
        await pair.open(DEPOSIT, STREAM_SETTLE_TIMEOUT)

        # Bob never claims: this payment stays pending until its lock expires (50 blocks, 10 s).
        params = {"node_id": pair.bob_id, "amount": 7, "timeout": 0.5}
        held = await pair.net.rpc("alice", "send", params)
        assert held["status"] == "pending"
        # Payments refused at once (no channel with a stranger): final, with their reason.
        stranger = {"node_id": os.urandom(32).hex(), "amount": 5}
        for _ in range(3):
            with pytest.raises(RpcError, match="no usable channel"):
                await pair.net.rpc("alice", "send", stranger)
        refused_at = time.monotonic()

        async def refused_ones_pruned() -> bool:
            return not await pair.net.rpc("alice", "payments", {"status": "failed"})

        await poll_until(refused_ones_pruned, "the refused payments pruned")
        assert time.monotonic() - refused_at >= keep_seconds - 0.1  # not before they were old
        (pending,) = await pair.net.rpc("alice", "payments")
        assert (pending["payment_hash"], pending["status"]) == (held["payment_hash"], "pending")

        # Once its lock has expired it is final, and it goes in its turn.
        async def failed() -> bool:
            listed = await pair.net.rpc("alice", "payments")
            return not listed or listed[0]["status"] == "failed"

        async def none_left() -> bool:
            return not await pair.net.rpc("alice", "payments")

        await poll_until(failed, "the held payment failed")
        await poll_until(none_left, "every record pruned")
        counts = (await pair.net.rpc("alice", "info"))["payments"]["out"]
        assert counts == {"pending": 0, "succeeded": 0, "failed": 0}
