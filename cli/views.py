"""The human views of single documents: a node's info, a channel, a peer, a payment, a decoded
invoice, a batch summary and the layer-1 answers. Each takes the JSON document a command
prints with `--json` and returns a rich renderable (pure, see `render.py`).

Labels are words, not JSON keys, where that reads better (`payment hash`, `settle window`);
they are short enough that a whole id still fits an 80-column line beside them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from p2pchan_cli.render import (
    document_rows,
    key_values,
    milliseconds,
    relative_time,
    route_text,
    short_id,
    text_of,
    utc_time,
)


def info_view(info: Mapping[str, Any]) -> str:
    height = info.get("block_height")
    head = info.get("l1_height")
    if head is None:
        chain = f"block {text_of(height)}; layer 1 unreachable"
    else:
        synced = "synced" if info.get("synced") else "catching up"
        chain = f"block {text_of(height)} of {head}, {synced}"
    states = info.get("channel_states") or {}
    counted = ", ".join(f"{count} {state}" for state, count in states.items())
    channels = text_of(info.get("channels")) + (f" ({counted})" if counted else "")
    return key_values(
        [
            ("node id", text_of(info.get("node_id"))),
            ("alias", text_of(info.get("alias"))),
            ("uri", text_of(info.get("uri"))),
            ("version", text_of(info.get("version"))),
            ("layer 1", chain),
            ("l1 balance", text_of(info.get("l1_balance"))),
            ("peers", f"{text_of(info.get('peers'))} connected"),
            ("channels", channels),
        ]
    )


def channel_view(channel: Mapping[str, Any]) -> str:
    rows = document_rows(
        channel,
        {
            "channel_id": "channel",
            "peer": "peer",
            "state": "state",
            "capacity": "capacity",
            "local_balance": "local",
            "remote_balance": "remote",
            "pending_locks": "pending locks",
        },
    )
    if "our_deposit" in channel:
        ours, theirs = text_of(channel["our_deposit"]), text_of(channel.get("partner_deposit"))
        rows.append(("deposits", f"{ours} ours, {theirs} theirs"))
    if "settle_timeout" in channel:
        rows.append(("settle window", f"{text_of(channel['settle_timeout'])} blocks"))
    if channel.get("settled_balance") is not None:
        rows.append(("settled", f"{text_of(channel['settled_balance'])} to us on layer 1"))
    if channel.get("note"):
        rows.append(("note", text_of(channel["note"])))
    return key_values(rows)


def peer_view(peer: Mapping[str, Any]) -> str:
    return key_values(
        [
            ("node id", text_of(peer.get("node_id"))),
            ("address", f"{text_of(peer.get('host'))}:{text_of(peer.get('port'))}"),
            ("connected", text_of(peer.get("connected"))),
            ("direction", text_of(peer.get("direction"))),
            ("remembered", text_of(peer.get("remembered"))),
        ]
    )


def payment_view(result: Mapping[str, Any]) -> str:
    """A `send` / `pay` result; the preimage and error only when there is one."""
    rows = [
        ("status", text_of(result.get("status"))),
        ("payment hash", text_of(result.get("payment_hash"))),
    ]
    if result.get("preimage"):
        rows.append(("preimage", text_of(result["preimage"])))
    rows += [
        ("amount", text_of(result.get("amount"))),
        ("fee", text_of(result.get("fee"))),
        ("route", route_text(result.get("route"))),
        ("duration", milliseconds(result.get("duration_ms"))),
    ]
    if result.get("error"):
        rows.append(("error", text_of(result["error"])))
    return key_values(rows)


def decoded_invoice_view(invoice: Mapping[str, Any], now_ms: int) -> str:
    expires = invoice.get("expires_ms")
    when = "-"
    if isinstance(expires, int):
        when = f"{utc_time(expires)} ({relative_time(expires, now_ms)})"
    hints = invoice.get("route_hints") or []
    return key_values(
        [
            ("payee", text_of(invoice.get("payee"))),
            ("amount", text_of(invoice.get("amount"))),
            ("payment hash", text_of(invoice.get("payment_hash"))),
            ("description", text_of(invoice.get("description"))),
            ("created", utc_time(invoice.get("created_ms"))),
            ("expires", when),
            ("final lock", f"at least {text_of(invoice.get('min_final_lock_timeout'))} blocks"),
            ("route hints", _hints_text(hints)),
        ]
    )


def _hints_text(hints: Any) -> str:
    """`via 8384c9a4…1c93f3 (1+100ppm), ...`: the nodes the payee can be reached from."""
    if not isinstance(hints, list) or not hints:
        return "none"
    return ", ".join(
        f"via {short_id(h.get('node_id'))} ({text_of(h.get('fee_base'))}+"
        f"{text_of(h.get('fee_ppm'))}ppm)"
        if isinstance(h, Mapping)
        else text_of(h)
        for h in hints
    )


def batch_summary_view(summary: Mapping[str, Any]) -> str:
    """A pay-batch summary, then each failure reason with how many payments it ended."""
    rows = document_rows(
        summary,
        {
            "count": "payments",
            "succeeded": "succeeded",
            "failed": "failed",
            "pending": "pending",
            "seconds": "seconds",
            "payments_per_s": "payments/s",
        },
    )
    rows += [
        ("p50", milliseconds(summary.get("p50_ms"))),
        ("p99", milliseconds(summary.get("p99_ms"))),
    ]
    reasons: Mapping[str, int] = summary.get("failure_reasons") or {}
    if not reasons:
        return key_values(rows)
    lines = [f"{count:>8}  {reason}" for reason, count in reasons.items()]
    return "\n".join([key_values(rows), "", "failures by reason:", *lines])


L1_LABELS = {
    "chain_id": "chain id",
    "height": "height",
    "head_hash": "head hash",
    "block_time": "block time (s)",
    "dev": "dev chain",
    "min_fee": "min fee",
    "pending_transactions": "pending txs",
    "supply": "supply",
    "burned": "fees burned",
    "contract_holdings": "in contracts",
    "node_id": "account",
    "balance": "balance",
    "nonce": "nonce",
    "pending_balance": "pending balance",
    "pending_nonce": "pending nonce",
    "amount": "amount",
    "tx_hash": "tx hash",
    "block": "block",
    "included": "included",
}


def l1_view(document: Mapping[str, Any]) -> str:
    """`l1 status`, `balance`, `faucet`, `mine`: every field, under its label."""
    return key_values(document_rows(document, L1_LABELS))


def plasma_status_view(status: Mapping[str, Any]) -> str:
    """`plasma status` and `plasma join`: the chain, the node's view of it, its health."""
    health = "good" if status.get("chain_ok") else f"BAD — {text_of(status.get('reason'))}"
    synced = "caught up" if status.get("caught_up") else "catching up with layer 1"
    operator = text_of(status.get("address"))
    if status.get("operator_connected") is False:
        operator += " (not connected)"
    return key_values(
        [
            ("plasma id", text_of(status.get("plasma_id"))),
            ("operator", text_of(status.get("operator"))),
            ("address", operator),
            ("chain", health),
            ("checked", f"block {text_of(status.get('block'))}, {synced}"),
            ("layer 1", f"block {text_of(status.get('l1_height'))}"),
            ("challenge", f"{text_of(status.get('challenge_period'))} blocks"),
            ("exit bond", text_of(status.get("exit_bond"))),
            ("withhold", f"{text_of(status.get('withhold_timeout'))} blocks"),
        ]
    )


def plasma_send_view(result: Mapping[str, Any]) -> str:
    return key_values(
        [
            ("status", text_of(result.get("status"))),
            ("tx hash", text_of(result.get("tx_hash"))),
            ("block", text_of(result.get("block"))),
            ("to", text_of(result.get("to"))),
            ("amount", text_of(result.get("amount"))),
        ]
    )


def plasma_balance_view(result: Mapping[str, Any]) -> str:
    labels = ("spendable", "pending", "exiting", "exited")
    return key_values((label, text_of(result.get(label))) for label in labels)
