"""What a person sees: the human tables and views, rendered at a fixed width and compared with
the text expected, at 80 and 160 columns. Ids are shortened in the middle, headers sit over
their cells, numbers are never cut, nothing reads as Python data (`None`, `True`, a repr)."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest
from rich.cells import cell_len

from p2pchan_cli.channel_commands import channel_state_text
from p2pchan_cli.render import key_values, relative_time, route_text, short_id, text_of
from p2pchan_cli.tables import (
    channel_table,
    invoice_table,
    payment_table,
    peer_table,
    plasma_exit_table,
    plasma_exits_table,
    plasma_utxo_table,
)
from p2pchan_cli.views import (
    batch_summary_view,
    channel_view,
    decoded_invoice_view,
    info_view,
    payment_view,
    plasma_balance_view,
    plasma_status_view,
)

ALICE, BOB, CHANNEL, OTHER = "a1" * 32, "b2" * 32, "c3" * 32, "d4" * 32
NOW_MS = 1_796_044_800_000  # 2026-11-30 13:20 UTC

OPEN_CHANNEL = {
    "channel_id": CHANNEL,
    "peer": BOB,
    "state": "open",
    "capacity": 15000,
    "local_balance": 8735,
    "remote_balance": 6265,
    "pending_locks": 2,
    "our_deposit": 10000,
    "partner_deposit": 5000,
    "settle_timeout": 100,
}
SETTLED_CHANNEL = {
    "channel_id": OTHER,
    "peer": ALICE,
    "state": "settled",
    "capacity": 10000,
    "local_balance": 0,
    "remote_balance": 10000,
    "pending_locks": 0,
    "settled_balance": 0,
    "note": "cooperative close expired unused; force-closing",
}
PEERS = [
    {
        "node_id": BOB,
        "host": "127.0.0.1",
        "port": 9736,
        "connected": True,
        "direction": "outbound",
        "remembered": True,
    },
    {
        "node_id": ALICE,
        "host": "10.0.0.7",
        "port": 9735,
        "connected": False,
        "direction": None,
        "remembered": True,
    },
]
PAYMENTS = [
    {
        "payment_hash": CHANNEL,
        "direction": "out",
        "peer": BOB,
        "amount": 250,
        "fee": 0,
        "status": "failed",
        "error": "peer b2b2b2b2…b2b2b2 is offline: nothing was sent",
    },
    {
        "payment_hash": OTHER,
        "direction": "in",
        "peer": BOB,
        "amount": 1000,
        "fee": 0,
        "status": "succeeded",
        "error": "",
    },
]


def expected(text: str) -> str:
    return textwrap.dedent(text).strip("\n")


def test_peers_headers_sit_over_their_cells_at_80_and_160() -> None:
    table = """
        node             address         connected  direction  remembered
        ─────────────────────────────────────────────────────────────────
        b2b2b2b2…b2b2b2  127.0.0.1:9736  yes        outbound   yes
        a1a1a1a1…a1a1a1  10.0.0.7:9735   no         -          yes
    """
    assert peer_table(PEERS, 80) == expected(table)
    assert peer_table(PEERS, 160) == expected(table)  # nothing to gain from more room


def test_channels_show_balances_at_80_and_160() -> None:
    assert channel_table([OPEN_CHANNEL], 80) == expected(
        """
        channel          peer             state  capacity  local  remote  locks
        ───────────────────────────────────────────────────────────────────────
        c3c3c3c3…c3c3c3  b2b2b2b2…b2b2b2  open      15000   8735    6265      2
        """
    )
    both = [OPEN_CHANNEL, SETTLED_CHANNEL]
    # At 80 columns the pending locks give way to what the settled channel paid us.
    assert channel_table(both, 80) == expected(
        """
        channel          peer             state    capacity  local  remote  settled
        ───────────────────────────────────────────────────────────────────────────
        c3c3c3c3…c3c3c3  b2b2b2b2…b2b2b2  open        15000   8735    6265        -
        d4d4d4d4…d4d4d4  a1a1a1a1…a1a1a1  settled     10000      0   10000        0

        d4d4d4d4…d4d4d4: cooperative close expired unused; force-closing
        """
    )
    assert channel_table(both, 160) == expected(
        """
        channel          peer             state    capacity  local  remote  locks  settled
        ──────────────────────────────────────────────────────────────────────────────────
        c3c3c3c3…c3c3c3  b2b2b2b2…b2b2b2  open        15000   8735    6265      2        -
        d4d4d4d4…d4d4d4  a1a1a1a1…a1a1a1  settled     10000      0   10000      0        0

        d4d4d4d4…d4d4d4: cooperative close expired unused; force-closing
        """
    )


def test_payments_wrap_their_reasons_at_80_and_show_them_whole_at_160() -> None:
    assert payment_table(PAYMENTS, 80) == expected(
        """
        payment hash     dir  amount  status     reason
        ────────────────────────────────────────────────────────────────────────────────
        c3c3c3c3…c3c3c3  out     250  failed     peer b2b2b2b2…b2b2b2 is offline:
                                                 nothing was sent
        d4d4d4d4…d4d4d4  in     1000  succeeded  -
        """
    )
    assert payment_table(PAYMENTS, 160) == expected(
        """
        payment hash     dir  peer             amount  fee  status     reason
        ────────────────────────────────────────────────────────────────────────────────────────────────────────────────
        c3c3c3c3…c3c3c3  out  b2b2b2b2…b2b2b2     250    0  failed     peer b2b2b2b2…b2b2b2 is offline: nothing was sent
        d4d4d4d4…d4d4d4  in   b2b2b2b2…b2b2b2    1000    0  succeeded  -
        """  # noqa: E501 - a 160-column table
    )


def test_invoices_at_80() -> None:
    invoices = [
        {
            "payment_hash": CHANNEL,
            "amount": 1000,
            "status": "open",
            "expires_ms": NOW_MS + 3_600_000,
            "description": "coffee",
        }
    ]
    assert invoice_table(invoices, 80) == expected(
        """
        payment hash     amount  status  expires               description
        ──────────────────────────────────────────────────────────────────
        c3c3c3c3…c3c3c3    1000  open    2026-11-30 14:20 UTC  coffee
        """
    )


def test_empty_lists_say_so() -> None:
    assert channel_table([], 80) == "no channels"
    assert peer_table([], 80) == "no peers"
    assert payment_table([], 80) == "no payments"
    assert invoice_table([], 80) == "no invoices"


@pytest.mark.parametrize("width", [80, 100, 120, 160, 200])
def test_tables_fit_their_width_and_never_cut_a_number(width: int) -> None:
    huge = dict(OPEN_CHANNEL, capacity=18446744073709551615, local_balance=18446744073709551614)
    for text in (channel_table([huge, SETTLED_CHANNEL], width), payment_table(PAYMENTS, width)):
        assert max(cell_len(line) for line in text.splitlines()) <= width
        assert all(line == line.rstrip() for line in text.splitlines())
    listed = channel_table([huge], width)
    assert "18446744073709551614" in listed and "6265" in listed  # local and remote, whole


def test_a_payment_result_reads_as_words_not_python() -> None:
    result = {
        "status": "succeeded",
        "payment_hash": CHANNEL,
        "preimage": OTHER,
        "amount": 250,
        "fee": 0,
        "route": [{"node_id": BOB, "channel_id": CHANNEL, "amount": 250, "fee": 0}],
        "duration_ms": 5,
        "error": None,
    }
    assert payment_view(result) == expected(
        f"""
        status        succeeded
        payment hash  {CHANNEL}
        preimage      {OTHER}
        amount        250
        fee           0
        route         b2b2b2b2…b2b2b2
        duration      5 ms
        """
    )
    failed = dict(result, status="failed", preimage=None, error="insufficient capacity")
    shown = payment_view(failed)
    assert "preimage" not in shown and "error         insufficient capacity" in shown
    for text in (payment_view(result), shown):
        assert not any(word in text for word in ("None", "True", "False", "[{", "{'"))


def test_a_route_reads_as_its_hops() -> None:
    hops = [{"node_id": BOB}, {"node_id": ALICE}, {"node_id": OTHER}]
    assert route_text(hops) == "b2b2b2b2…b2b2b2 → a1a1a1a1…a1a1a1 → d4d4d4d4…d4d4d4"
    assert route_text([]) == "-"


def test_one_channel_fits_80_columns_with_its_ids_whole() -> None:
    text = channel_view(dict(SETTLED_CHANNEL, settle_timeout=40))
    assert text == expected(
        f"""
        channel        {OTHER}
        peer           {ALICE}
        state          settled
        capacity       10000
        local          0
        remote         10000
        pending locks  0
        settle window  40 blocks
        settled        0 to us on layer 1
        note           cooperative close expired unused; force-closing
        """
    )
    assert max(len(line) for line in channel_view(OPEN_CHANNEL).splitlines()) <= 80


def test_info_counts_channels_by_state_and_says_whether_synced() -> None:
    info: dict[str, Any] = {
        "node_id": ALICE,
        "alias": "alice",
        "host": "127.0.0.1",
        "port": 9735,
        "block_height": 15,
        "l1_balance": 90000,
        "peers": 1,
        "channels": 3,
        "uri": f"{ALICE}@127.0.0.1:9735",
        "version": "0.1.0",
        "l1_height": 15,
        "synced": True,
        "channel_states": {"open": 1, "settled": 2},
    }
    assert info_view(info) == expected(
        f"""
        node id     {ALICE}
        alias       alice
        uri         {ALICE}@127.0.0.1:9735
        version     0.1.0
        layer 1     block 15 of 15, synced
        l1 balance  90000
        peers       1 connected
        channels    3 (1 open, 2 settled)
        """
    )
    unreachable = dict(info, l1_height=None, synced=False, l1_balance=None)
    assert "block 15; layer 1 unreachable" in info_view(unreachable)
    assert "l1 balance  -" in info_view(unreachable)


def test_a_decoded_invoice_says_when_it_expires() -> None:
    decoded = {
        "payee": BOB,
        "amount": 1000,
        "payment_hash": CHANNEL,
        "description": "",
        "created_ms": NOW_MS - 60_000,
        "expiry_seconds": 3600,
        "expires_ms": NOW_MS + 3_540_000,
        "min_final_lock_timeout": 11,
        "route_hints": [],
    }
    text = decoded_invoice_view(decoded, NOW_MS)
    assert "expires       2026-11-30 14:19 UTC (in 59 min)" in text
    assert "description   -" in text and "route hints   none" in text
    hint = {"node_id": BOB, "channel_id": CHANNEL, "fee_base": 1, "fee_ppm": 100}
    text = decoded_invoice_view({**decoded, "route_hints": [hint]}, NOW_MS)
    assert f"route hints   via {BOB[:8]}…{BOB[-6:]} (1+100ppm)" in text


def test_a_batch_summary_lists_its_failure_reasons_by_count() -> None:
    summary = {
        "count": 5,
        "succeeded": 2,
        "failed": 3,
        "pending": 0,
        "seconds": 0.25,
        "payments_per_s": 20.0,
        "p50_ms": None,
        "p99_ms": 12.5,
        "failure_reasons": {"insufficient capacity": 2, "peer b2b2…b2b2 is offline": 1},
    }
    assert batch_summary_view(summary) == expected(
        """
        payments    5
        succeeded   2
        failed      3
        pending     0
        seconds     0.25
        payments/s  20
        p50         -
        p99         12.5 ms

        failures by reason:
               2  insufficient capacity
               1  peer b2b2…b2b2 is offline
        """
    )


def test_values_read_as_words() -> None:
    assert [text_of(v) for v in (None, "", True, False, 3, 0.5, [1, None], {"a": 1})] == [
        "-",
        "-",
        "yes",
        "no",
        "3",
        "0.5",
        "1, -",
        "a 1",
    ]
    assert text_of("two\nlines") == "two lines"
    assert short_id(CHANNEL) == "c3c3c3c3…c3c3c3" and short_id("abc") == "abc"
    assert short_id(None) == "-"
    assert key_values([("a", "1"), ("long label", "")]) == "a           1\nlong label"
    assert relative_time(NOW_MS + 90_000, NOW_MS) == "in 1 min"
    assert relative_time(NOW_MS - 7_200_000, NOW_MS) == "2 h ago"
    assert relative_time(NOW_MS + 5_000, NOW_MS) == "in 5 s"


def test_a_timed_out_command_says_where_the_channel_is() -> None:
    closed = dict(OPEN_CHANNEL, state="closed")
    assert channel_state_text(closed) == (
        "channel c3c3c3c3…c3c3c3 is closed on layer 1 and settles by itself once its 100-block "
        "window ends"
    )
    assert channel_state_text(dict(OPEN_CHANNEL, state="opening")) == (
        "channel c3c3c3c3…c3c3c3 is opening: its deposit is not on layer 1 yet"
    )
    assert channel_state_text(dict(SETTLED_CHANNEL, pending_locks=2)) == (
        "channel d4d4d4d4…d4d4d4 is settled; 2 locks await their unlock on layer 1 "
        "(cooperative close expired unused; force-closing)"
    )


HUGE_POS = 18_446_744_072_000_065_535 - 65_534  # the largest block, tree slot and output
PLASMA_EXITS = [
    {
        "utxo_pos": 1_000_000_000_001,
        "owner": ALICE,
        "amount": 700,
        "exitable_at": 95,
        "status": "paid",
        "ours": True,
        "paid": 700,
    },
    {
        "utxo_pos": HUGE_POS,
        "owner": BOB,
        "amount": 18446744073709551615,
        "exitable_at": 18446744073709551615,
        "status": "queued",
        "ours": False,
        "paid": None,
    },
]


def test_plasma_exits_mark_ours_and_fit_80_columns() -> None:
    assert plasma_exits_table(PLASMA_EXITS[:1], 80) == expected(
        """
             utxo pos  owner  amount  exitable at  status  paid
        ───────────────────────────────────────────────────────
        1000000000001  us        700           95  paid     700
        """
    )
    for width in (80, 160):
        text = plasma_exits_table(PLASMA_EXITS, width)
        assert max(cell_len(line) for line in text.splitlines()) <= width
        assert str(HUGE_POS) in text and "18446744073709551615" in text
    assert plasma_exits_table([], 80) == "no exits"


def test_plasma_outputs_and_exits_started_at_80() -> None:
    outputs = [
        {"utxo_pos": 1_000_000_000, "amount": 1000, "block": 1, "status": "spent"},
        {
            "utxo_pos": HUGE_POS,
            "amount": 18446744073709551615,
            "block": 18446744072,
            "status": "spendable",
        },
    ]
    text = plasma_utxo_table(outputs, 80)
    assert max(cell_len(line) for line in text.splitlines()) <= 80
    assert "spendable" in text and str(HUGE_POS) in text
    started = [
        {"utxo_pos": 1_000_000_000, "amount": 1000, "exitable_at": None, "status": "requested"}
    ]
    assert plasma_exit_table(started, 80) == expected(
        """
          utxo pos  amount  exitable at  status
        ──────────────────────────────────────────
        1000000000    1000            -  requested
        """
    )
    assert plasma_utxo_table([], 80) == "no outputs"
    assert plasma_exit_table([], 80) == "nothing to exit"


def test_plasma_status_says_why_a_chain_is_bad() -> None:
    status = {
        "plasma_id": "e5" * 32,
        "operator": OTHER,
        "block": 2000,
        "chain_ok": False,
        "reason": "block 3000: withheld: not served in time",
        "address": "127.0.0.1:7810",
        "operator_connected": False,
        "caught_up": True,
        "l1_height": 52,
        "challenge_period": 20,
        "exit_bond": 10,
        "withhold_timeout": 10,
    }
    text = plasma_status_view(status)
    assert "BAD — block 3000: withheld: not served in time" in text
    assert "127.0.0.1:7810 (not connected)" in text and "block 2000, caught up" in text
    assert max(cell_len(line) for line in text.splitlines()) <= 80
    assert "None" not in text and "True" not in text
    assert "pending    0" in plasma_balance_view({"spendable": 5, "pending": 0, "exiting": 0})
