"""The human tables of lists: peers, channels, payments, invoices. Pure (see `render.py`).

Each table fits the terminal's width, 80 columns included: the columns a person needs first (a
short id, the balances, the state) are always there; the others (`drop` > 0) are left out on a
narrow terminal, least needed first. One header per column, in the order of the cells. What does
not fit a row (a channel's note) follows the table, one line per channel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from p2pchan_cli.render import Column, render_table, short_id, text_of, utc_time

Rows = Sequence[Mapping[str, Any]]


def peer_table(peers: Rows, width: int) -> str:
    if not peers:
        return "no peers"
    columns = [
        Column("node"),
        Column("address"),
        Column("connected"),
        Column("direction", drop=2),
        Column("remembered", drop=1),
    ]
    rows = [
        [
            short_id(peer.get("node_id")),
            f"{text_of(peer.get('host'))}:{text_of(peer.get('port'))}",
            text_of(peer.get("connected")),
            text_of(peer.get("direction")),
            text_of(peer.get("remembered")),
        ]
        for peer in peers
    ]
    return render_table(columns, rows, width)


def channel_table(channels: Rows, width: int) -> str:
    """One row per channel; a `settled` column once any channel has a settled balance (what
    it paid us on layer 1), and each channel's `note` (why it is in its state) under it."""
    if not channels:
        return "no channels"
    settled = any(c.get("settled_balance") is not None for c in channels)
    columns = [
        Column("channel"),
        Column("peer", drop=2),
        Column("state"),
        Column("capacity", numeric=True, drop=1),
        Column("local", numeric=True),
        Column("remote", numeric=True),
        Column("locks", numeric=True, drop=3),
        *([Column("settled", numeric=True)] if settled else []),
    ]
    rows = []
    notes = []
    for c in channels:
        row = [
            short_id(c.get("channel_id")),
            short_id(c.get("peer")),
            text_of(c.get("state")),
            text_of(c.get("capacity")),
            text_of(c.get("local_balance")),
            text_of(c.get("remote_balance")),
            text_of(c.get("pending_locks")),
        ]
        rows.append(row + ([text_of(c.get("settled_balance"))] if settled else []))
        if c.get("note"):
            notes.append(f"{short_id(c.get('channel_id'))}: {text_of(c['note'])}")
    listing = render_table(columns, rows, width)
    return "\n".join([listing, "", *notes]) if notes else listing


def payment_table(payments: Rows, width: int) -> str:
    """Newest first, as the node lists them; a `reason` column once any payment has one."""
    if not payments:
        return "no payments"
    reasons = any(p.get("error") for p in payments)
    columns = [
        Column("payment hash"),
        Column("dir", drop=1),
        Column("peer", drop=3),
        Column("amount", numeric=True),
        Column("fee", numeric=True, drop=4),
        Column("status"),
        *([Column("reason", flexible=True)] if reasons else []),
    ]
    rows = [
        [
            short_id(p.get("payment_hash")),
            text_of(p.get("direction")),
            short_id(p.get("peer")),
            text_of(p.get("amount")),
            text_of(p.get("fee")),
            text_of(p.get("status")),
            *([text_of(p.get("error"))] if reasons else []),
        ]
        for p in payments
    ]
    return render_table(columns, rows, width)


def invoice_table(invoices: Rows, width: int) -> str:
    if not invoices:
        return "no invoices"
    columns = [
        Column("payment hash"),
        Column("amount", numeric=True),
        Column("status"),
        Column("expires", drop=1),
        Column("description", flexible=True),
    ]
    rows = [
        [
            short_id(i.get("payment_hash")),
            text_of(i.get("amount")),
            text_of(i.get("status")),
            utc_time(i.get("expires_ms")),
            text_of(i.get("description")),
        ]
        for i in invoices
    ]
    return render_table(columns, rows, width)


def plasma_utxo_table(outputs: Rows, width: int) -> str:
    if not outputs:
        return "no outputs"
    columns = [
        Column("utxo pos", numeric=True),
        Column("amount", numeric=True),
        Column("block", numeric=True, drop=1),
        Column("status"),
    ]
    rows = [
        [
            text_of(o.get("utxo_pos")),
            text_of(o.get("amount")),
            text_of(o.get("block")),
            text_of(o.get("status")),
        ]
        for o in outputs
    ]
    return render_table(columns, rows, width)


def plasma_exit_table(exits: Rows, width: int) -> str:
    """The exits `plasma exit` started (or asked for: no `exitable at` yet)."""
    if not exits:
        return "nothing to exit"
    columns = [
        Column("utxo pos", numeric=True),
        Column("amount", numeric=True),
        Column("exitable at", numeric=True),
        Column("status", drop=1),
    ]
    rows = [
        [
            text_of(e.get("utxo_pos")),
            text_of(e.get("amount")),
            text_of(e.get("exitable_at")),
            text_of(e.get("status")),
        ]
        for e in exits
    ]
    return render_table(columns, rows, width)


def plasma_exits_table(exits: Rows, width: int) -> str:
    """Every exit of the chain, ours marked, in the order layer 1 pays them."""
    if not exits:
        return "no exits"
    columns = [
        Column("utxo pos", numeric=True),
        Column("owner", drop=1),
        Column("amount", numeric=True),
        Column("exitable at", numeric=True),
        Column("status"),
        Column("paid", numeric=True, drop=2),
    ]
    rows = [
        [
            text_of(e.get("utxo_pos")),
            "us" if e.get("ours") else short_id(e.get("owner")),
            text_of(e.get("amount")),
            text_of(e.get("exitable_at")),
            text_of(e.get("status")),
            text_of(e.get("paid")),
        ]
        for e in exits
    ]
    return render_table(columns, rows, width)
