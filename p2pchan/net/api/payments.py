"""The RPC methods about payments: send, pay, decode, invoice, payments, invoices (and, on --dev
nodes, the payment load generator of the benchmark).

`payments` and `invoices` page through history in the database, newest first: `limit` records
(100 unless given, at most 10,000), below a `cursor` (the `index` of the last record of the page
before) or past the newest `index_offset`, filtered by `status` and `payment_hash` (a prefix).

`send` and `pay` wait until the payment is final (the payee revealed the secret: succeeded; its
lock can no longer be claimed: failed), or return `pending` when the call's timeout runs out:
never `failed` while a lock of it can still be claimed. A payment refused before anything was
signed (no usable channel, the peer offline) fails the call with its reason, and is recorded.
"""

from __future__ import annotations

import datetime
import functools
import os
import statistics
import time
from typing import Any

import trio

from p2pchan.core.inputs import ActionCreateInvoice, ActionPay, ActionSend
from p2pchan.core.invoice import DEFAULT_EXPIRY_SECONDS, Invoice, decode_invoice
from p2pchan.core.outputs import NotifyInvoiceCreated
from p2pchan.core.payment.records import (
    INVOICE_STATUSES,
    PAYMENT_STATUSES,
    PaymentRecord,
    RouteHop,
)
from p2pchan.crypto.hashing import sha256
from p2pchan.errors import ChainError, UserError
from p2pchan.net.api.context import NodeContext
from p2pchan.net.api.pages import DEFAULT_PAGE, MAX_PAGE
from p2pchan.net.api.params import address, amount
from p2pchan.net.driver import Driver, PaymentWaiter, now_ms
from p2pchan.net.rpc import RpcParamError, RpcServer, param, parsed_param
from p2pchan.storage.node_store import InvoiceQuery, page_invoices
from p2pchan.storage.payment_history import NO_INDEX, PaymentQuery, page_payments
from p2pchan.types import Address, ChannelId, Secret, SecretHash


def register(rpc: RpcServer, node: NodeContext) -> None:
    driver = node.driver

    def check_invoice(text: str) -> Invoice:
        """Decode an invoice for this network and refuse it if it has expired."""
        invoice = decode_invoice(text, driver.state.chain_id)
        if invoice.is_expired(now_ms()):
            expired = datetime.datetime.fromtimestamp(invoice.expires_at_ms() / 1000, datetime.UTC)
            raise UserError(f"the invoice has expired (at {expired:%Y-%m-%d %H:%M:%S} UTC)")
        return invoice

    async def send(params: dict[str, Any]) -> dict[str, Any]:
        payee = parsed_param(params, "node_id", address)
        value = amount(params, "amount")
        waiter = await start_send(driver, payee, value)
        pending = _pending_record(payee, value, waiter.payment_hash)
        seconds = param(params, "timeout", float, default=None)
        return await final_or_pending(driver, waiter, pending, seconds)

    async def pay(params: dict[str, Any]) -> dict[str, Any]:
        invoice = check_invoice(param(params, "invoice", str))
        known = driver.state.registered.get(invoice.secrethash)
        try:
            on_chain = (
                known if known is not None else await node.link.secret_block(invoice.secrethash)
            )
        except ChainError:
            on_chain = None  # layer 1 unreachable: our own view of it still counts
        await driver.history.catch_up()  # its check under the step lock is then short
        request_id, waiter = driver.new_payment(invoice.secrethash)
        await driver.submit_payment(ActionPay(request_id, invoice, on_chain, now_ms()))
        pending = _pending_record(invoice.payee, invoice.amount, invoice.secrethash)
        seconds = param(params, "timeout", float, default=None)
        return await final_or_pending(driver, waiter, pending, seconds)

    async def decode(params: dict[str, Any]) -> dict[str, Any]:
        invoice = check_invoice(param(params, "invoice", str))
        return {
            "payee": invoice.payee.hex(),
            "amount": invoice.amount,
            "payment_hash": invoice.secrethash.hex(),
            "description": invoice.description,
            "created_ms": invoice.timestamp_ms,
            "expiry_seconds": invoice.expiry_seconds,
            "expires_ms": invoice.expires_at_ms(),
            "min_final_lock_timeout": invoice.min_final_lock_timeout,
            "route_hints": [
                {
                    "node_id": hint.node_id.hex(),
                    "channel_id": hint.channel_id.hex(),
                    "fee_base": hint.fee_base,
                    "fee_ppm": hint.fee_ppm,
                }
                for hint in invoice.hints()
            ],
        }

    async def invoice(params: dict[str, Any]) -> dict[str, Any]:
        value = amount(params, "amount")
        description = param(params, "description", str, default="")
        expiry = param(params, "expiry", int, default=None)
        if expiry is not None and not 0 < expiry < 2**32:
            raise RpcParamError("expiry must be a positive number of seconds")
        if len(description) > 640:
            raise RpcParamError("the description is at most 640 characters")
        secret = Secret(os.urandom(32))
        action = ActionCreateInvoice(
            value, description, expiry or DEFAULT_EXPIRY_SECONDS, secret, now_ms()
        )
        outputs = await driver.step([action])
        [created] = [o.record for o in outputs if isinstance(o, NotifyInvoiceCreated)]
        return {
            "invoice": created.encoded,
            "payment_hash": created.payment_hash.hex(),
            "amount": created.amount,
            "expires_ms": created.expires_ms,
        }

    async def payments(params: dict[str, Any]) -> list[dict[str, Any]]:
        status = param(params, "status", str, default=None)
        if status is not None and status not in PAYMENT_STATUSES:
            raise RpcParamError(f"status must be one of {', '.join(PAYMENT_STATUSES)}")
        limit, before, offset = page_params(params)
        query = PaymentQuery(limit, before, offset, status, hash_prefix_param(params))
        await driver.history.catch_up()
        page = await driver.database.run(functools.partial(page_payments, query=query))
        return [payment_json(stored.record, stored.index) for stored in page]

    async def invoices(params: dict[str, Any]) -> list[dict[str, Any]]:
        status = param(params, "status", str, default=None)
        if status is not None and status not in INVOICE_STATUSES:
            raise RpcParamError(f"status must be one of {', '.join(INVOICE_STATUSES)}")
        limit, before, offset = page_params(params)
        query = InvoiceQuery(limit, before, offset, status, hash_prefix_param(params))
        now = now_ms()
        page = await driver.database.run(functools.partial(page_invoices, query=query, now_ms=now))
        return [
            {
                "payment_hash": r.payment_hash.hex(),
                "amount": r.amount,
                "fee": 0,
                "status": "expired" if r.status == "open" and now >= r.expires_ms else r.status,
                "description": r.description,
                "invoice": r.encoded,
                "expires_ms": r.expires_ms,
                "index": index,
            }
            for index, r in page
        ]

    async def debug_send_many(params: dict[str, Any]) -> dict[str, Any]:
        """Dev nodes only: COUNT spontaneous payments of AMOUNT to a peer, CONCURRENCY at a
        time, through the same path as `send`; latency measured per payment in the node."""
        if not node.config.dev:
            raise UserError("debug_send_many needs a node started with --dev")
        payee = parsed_param(params, "node_id", address)
        value = amount(params, "amount")
        count = param(params, "count", int)
        concurrency = param(params, "concurrency", int, default=100)
        with_latencies = param(params, "latencies", bool, default=False)
        latencies: list[float] = []
        outcomes = {"succeeded": 0, "failed": 0, "pending": 0}
        next_index = 0

        async def worker() -> None:
            nonlocal next_index
            while next_index < count:
                next_index += 1
                started = time.perf_counter()
                waiter = await start_send(driver, payee, value)
                await waiter.done.wait()
                outcome = waiter.outcome
                outcomes["failed" if outcome is None else outcome.status] += 1
                latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(max(1, min(concurrency, count))):
                nursery.start_soon(worker)
        seconds = time.perf_counter() - began
        latencies.sort()
        return {
            "count": count,
            **outcomes,
            "seconds": seconds,
            "payments_per_s": count / seconds if seconds else None,
            "p50_ms": statistics.median(latencies) * 1000 if latencies else None,
            "p99_ms": latencies[max(int(len(latencies) * 0.99) - 1, 0)] * 1000
            if latencies
            else None,
            "latencies_ms": [round(x * 1000, 3) for x in latencies] if with_latencies else None,
        }

    for name, handler in (
        ("send", send),
        ("pay", pay),
        ("decode", decode),
        ("invoice", invoice),
        ("payments", payments),
        ("invoices", invoices),
        ("debug_send_many", debug_send_many),
    ):
        rpc.register(name, handler)


async def start_send(driver: Driver, payee: Address, value: int) -> PaymentWaiter:
    """Start a spontaneous payment (the payee finds the secret in its payload)."""
    secret = Secret(os.urandom(32))
    request_id, waiter = driver.new_payment(SecretHash(sha256(secret)))
    await driver.submit_payment(ActionSend(request_id, payee, value, secret, now_ms()))
    return waiter


def _pending_record(payee: Address, value: int, payment_hash: SecretHash) -> PaymentRecord:
    """What a `send`/`pay` says of a payment not final yet (perhaps not even started)."""
    return PaymentRecord(
        payment_hash, "out", payee, ChannelId(b""), value, 0, "pending", None, now_ms(), None, ""
    )


async def final_or_pending(
    driver: Driver, waiter: PaymentWaiter, pending: PaymentRecord, seconds: float | None
) -> dict[str, Any]:
    """The `send`/`pay` result once final, or `pending` after `seconds` (if given). A payment
    refused before anything was signed fails the call with its reason."""
    with trio.move_on_after(seconds if seconds is not None else float("inf")):
        await waiter.done.wait()
    if waiter.refusal is not None:
        raise UserError(waiter.refusal)
    final = waiter.final
    if final is not None:
        return payment_result(final, now_ms())
    live = driver.state.payments.outgoing.get(waiter.payment_hash)
    return payment_result(pending if live is None else live.record, now_ms())


def payment_result(record: PaymentRecord, now: int) -> dict[str, Any]:
    """The `send`/`pay` result document (a contract of the CLI)."""
    finished = record.finished_ms or now
    return {
        "status": record.status,
        "payment_hash": record.payment_hash.hex(),
        "preimage": record.secret.hex() if record.secret and record.status == "succeeded" else None,
        "amount": record.amount,
        "fee": record.fee,
        "route": route_json(record),
        "duration_ms": max(finished - record.created_ms, 0),
        "error": record.error or None,
    }


def route_json(record: PaymentRecord) -> list[dict[str, Any]]:
    """The hops a payment took (one, for a payment over our channel with the payee)."""
    hops = record.route or (RouteHop(record.peer, record.channel_id, record.amount, 0),)
    return [
        {
            "node_id": hop.node_id.hex(),
            "channel_id": hop.channel_id.hex(),
            "amount": hop.amount,
            "fee": hop.fee,
        }
        for hop in hops
    ]


def page_params(params: dict[str, Any]) -> tuple[int, int | None, int]:
    """`limit`, `cursor` (records below this index) and `index_offset` (skip the newest so
    many) of a page of history; a cursor and an offset exclude each other."""
    limit = param(params, "limit", int, default=DEFAULT_PAGE)
    if not 1 <= limit <= MAX_PAGE:
        raise RpcParamError(f"limit must be from 1 to {MAX_PAGE}")
    cursor = param(params, "cursor", int, default=None)
    offset = param(params, "index_offset", int, default=0)
    if cursor is not None and offset:
        raise RpcParamError("give a cursor or an index offset, not both")
    if cursor is not None and not 1 <= cursor <= NO_INDEX:
        raise RpcParamError("cursor must be a positive index (from a record of the last page)")
    if not 0 <= offset <= NO_INDEX:
        raise RpcParamError("index_offset must be 0 or more")
    return limit, cursor, offset


def hash_prefix_param(params: dict[str, Any]) -> str | None:
    prefix = param(params, "payment_hash", str, default=None)
    if prefix is None:
        return None
    prefix = prefix.lower()
    if not prefix or len(prefix) > 64 or any(c not in "0123456789abcdef" for c in prefix):
        raise RpcParamError("payment_hash must be hex (a whole hash or its start)")
    return prefix


def payment_json(record: PaymentRecord, index: int | None = None) -> dict[str, Any]:
    """A payment as `payments` lists it (`index`: its place in history, the cursor of the
    next page)."""
    return {
        "payment_hash": record.payment_hash.hex(),
        "direction": record.direction,
        "peer": record.peer.hex(),
        "channel_id": record.channel_id.hex() or None,  # none: refused before any channel
        "amount": record.amount,
        "fee": record.fee,
        "route": [hop.node_id.hex() for hop in record.route],
        "status": record.status,
        "created_ms": record.created_ms,
        "finished_ms": record.finished_ms,
        "error": record.error,
        "index": index,
    }
