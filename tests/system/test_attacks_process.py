"""Honest nodes against attacking ones (`node start --dev --misbehave MODE`), and a cooperative
close that a layer-1 crash loses: real processes, every outcome checked on layer 1.

Alice is honest; Bob runs the attack. Covered:

- Bob withholds the secret of Alice's payment and then ignores her `lock_expired`, refuses it,
  or never counter-signs anything: her payment fails before its expiry plus the settle window,
  she closes the channel, and layer 1 gives her lock back. (Withholding the secret alone: the
  lock expires and is removed off-chain; the channel stays open.)
- Bob floods validly signed updates that Alice must refuse retryably: beyond a small budget
  they are scored and Bob is banned.
- Bob asks for a cooperative settle every block and never submits it: Alice signs once, then
  refuses and scores him; the channel takes payments again when the terms expire.
- Alice's cooperative close is lost when layer 1 is killed with -9 right after it: she submits
  it again, and the channel ends settled, never silently open again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from tests.conftest import ProcessRegistry
from tests.system.support import log_events, p2pchan, poll_until, wait_for_log_event
from tests.system.test_channels_process import (
    DEPOSIT,
    SETTLE_TIMEOUT,
    Pair,
    payment_records,
    start_pair,
)

pytestmark = pytest.mark.slow

DEADLINE = 90
AMOUNT = 500


async def alice_payment(pair: Pair) -> dict[str, Any]:
    [record] = [r for r in await payment_records(pair, "alice") if r["direction"] == "out"]
    return record


async def chain_height(pair: Pair) -> int:
    return int((await pair.l1(lambda c: c.status())).height)


@pytest.mark.parametrize(
    "attack",
    [
        "withhold-reveal,ignore-lock-expired",
        "withhold-reveal,refuse-lock-expired",
        "withhold-reveal,withhold-ack",
        "withhold-reveal",
    ],
)
async def test_a_payee_that_keeps_the_lock_cannot_keep_the_payment_pending(
    processes: ProcessRegistry, tmp_path: Path, attack: str
) -> None:
    with trio.fail_after(DEADLINE):
        pair = await start_pair(processes, tmp_path, bob_extra=("--misbehave", attack))
        await pair.open(DEPOSIT)
        sent_at = await chain_height(pair)
        params = {"node_id": pair.bob_id, "amount": AMOUNT, "timeout": 0.5}
        result = await pair.net.rpc("alice", "send", params)
        assert result["status"] == "pending"
        # The lock expires at most SETTLE_TIMEOUT blocks after it was sent (the lock timeout is
        # capped by the channel's settle window); its payment must be final within that window.
        latest = sent_at + 1 + SETTLE_TIMEOUT + SETTLE_TIMEOUT

        async def final() -> bool:
            return (await alice_payment(pair))["status"] != "pending"

        await poll_until(final, "Alice's payment to be final")
        assert await chain_height(pair) <= latest + 1  # one block of slack: we polled
        record = await alice_payment(pair)
        assert record["status"] == "failed", record
        if attack == "withhold-reveal":
            # An honest lock_expired: removed off-chain, the channel stays open and whole.
            channel = await pair.channel("alice")
            assert (channel["state"], channel["local_balance"]) == ("open", DEPOSIT)
            closed = await p2pchan("--datadir", pair.datadir("alice"), "close", pair.channel_id)
            assert closed.returncode == 0, closed.stderr
        else:
            # Bob kept the lock: Alice closed, and layer 1 hands it back after settle.
            await pair.wait_channel("alice", lambda c: c["state"] == "settled")
            await pair.wait_no_pending_locks()
            channel = await pair.channel("alice")
            assert "expired lock" in channel["note"]
            assert channel["local_balance"] == channel["settled_balance"] == DEPOSIT
        await pair.wait_channel("bob", lambda c: c["state"] == "settled")
        await pair.assert_layer1(0, 0)


async def test_a_flood_of_retryable_refusals_gets_the_spammer_banned(
    processes: ProcessRegistry, tmp_path: Path
) -> None:
    with trio.fail_after(DEADLINE):
        pair = await start_pair(processes, tmp_path, bob_extra=("--misbehave", "spam-retryable"))
        await pair.open(DEPOSIT)
        await wait_for_log_event(
            pair.alice,
            lambda e: e["event"] == "peer_session_ended" and "banned" in e.get("reason", ""),
        )
        scored = [e for e in log_events(pair.alice) if e["event"] == "peer_misbehaved"]
        assert scored and all("lock_too_long" in e["reason"] for e in scored)
        [ready] = [e for e in log_events(pair.bob) if e["event"] == "node_ready"]
        assert ready["misbehave"] == "spam-retryable"  # an attacker's log says what it ran
        info = await pair.net.rpc("alice", "info")  # Alice serves on, unharmed
        assert info["peers"] == 0


async def test_a_partner_asking_for_cooperative_settles_forever_cannot_freeze_the_channel(
    processes: ProcessRegistry, tmp_path: Path
) -> None:
    with trio.fail_after(DEADLINE):
        pair = await start_pair(processes, tmp_path, bob_extra=("--misbehave", "coop-freeze"))
        await pair.open(DEPOSIT)
        await wait_for_log_event(
            pair.alice,
            lambda e: e["event"] == "peer_misbehaved" and "cooperative" in e["reason"],
        )
        await wait_for_log_event(
            pair.alice,
            lambda e: e["event"] == "peer_session_ended" and "banned" in e.get("reason", ""),
        )
        # The terms Alice signed once expire unused: the channel is open again, and says why.
        await pair.wait_channel("alice", lambda c: c["state"] == "open" and c["note"] != "")
        channel = await pair.channel("alice")
        assert "expired unused" in channel["note"]
        assert channel["local_balance"] == DEPOSIT


async def test_a_cooperative_close_lost_in_a_layer_1_crash_still_settles(
    processes: ProcessRegistry, tmp_path: Path
) -> None:
    with trio.fail_after(DEADLINE):
        pair = await start_pair(processes, tmp_path, block_time=1.0)
        await pair.open(DEPOSIT)
        paid = await pair.net.rpc("alice", "send", {"node_id": pair.bob_id, "amount": AMOUNT})
        assert paid["status"] == "succeeded"
        await pair.wait_no_pending_locks()
        closing = await p2pchan(
            "--datadir", pair.datadir("alice"), "close", pair.channel_id, "--no-wait", "--json"
        )
        assert closing.json()["state"] == "closing"
        await pair.net.restart_l1()  # kill -9: the settle in its mempool is gone

        async def never_open_again() -> bool:
            channel = await pair.channel("alice")
            assert channel["state"] != "open", channel
            return bool(channel["state"] == "settled")

        await poll_until(never_open_again, "Alice's channel settled")
        await pair.wait_channel("bob", lambda c: c["state"] == "settled")
        channel = await pair.channel("alice")
        assert channel["note"] == ""  # settled cooperatively, not by the forced fallback
        assert channel["settled_balance"] == channel["local_balance"] == DEPOSIT - AMOUNT
        await pair.assert_layer1(-AMOUNT, AMOUNT)
