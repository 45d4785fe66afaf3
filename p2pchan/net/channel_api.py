"""The control API for channels and payments: open, deposit, channels, close, send, pay,
invoice, decode, payments, invoices (and, on --dev nodes, the payment load generator of the
benchmark).

`open` takes only a connected peer: a channel with a node we cannot reach would lock the deposit
on layer 1 until a forced close and its whole window gave it back.

Handlers that wait (for blocks, or for a payment to become final) rely on the caller's deadline:
the CLI's --timeout ends the call, never the work it started.
"""

from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING, Any

import trio

from p2pchan.core.channel.state import Channel, ChannelStatus
from p2pchan.errors import UserError
from p2pchan.l1.state import MIN_SETTLE_TIMEOUT
from p2pchan.l1.transactions import ChannelDeposit
from p2pchan.net.payment_book import OutgoingPayment
from p2pchan.net.payments import PAYMENT_STATUSES, PaymentService, payment_result
from p2pchan.net.rpc import RpcParamError, param, parsed_param
from p2pchan.types import (
    KEY_SIZE,
    Address,
    ChannelId,
    NodeId,
    parse_hex,
    positive_amount,
    short_hex,
)

if TYPE_CHECKING:
    from p2pchan.net.node import Node

DEFAULT_SETTLE_TIMEOUT = 100
COOPERATIVE_REPLY_SECONDS = 15.0


def channel_json(channel: Channel) -> dict[str, Any]:
    return {
        "channel_id": channel.channel_id.hex(),
        "peer": channel.partner.hex(),
        "state": str(channel.status),
        "capacity": channel.capacity,
        "local_balance": _settled_or(channel.settled_ours, channel.local_balance()),
        "remote_balance": _settled_or(channel.settled_theirs, channel.remote_balance()),
        "pending_locks": _pending_locks(channel),
        "settled_balance": channel.settled_ours,
        "note": channel.note,
        "our_deposit": channel.our_deposit,
        "partner_deposit": channel.partner_deposit,
        "settle_timeout": channel.settle_timeout,
    }


def _settled_or(paid: int | None, off_chain: int) -> int:
    """Once settled, what layer 1 paid (a lost dispute and on-chain unlocks included)."""
    return off_chain if paid is None else paid


def _pending_locks(channel: Channel) -> int:
    """Locks still to be resolved: once settled, only those awaiting their on-chain unlock
    (the settled states keep the locks they carried, resolved or not)."""
    if channel.status == ChannelStatus.SETTLED:
        return sum(len(settled.locks) for settled in channel.settled_unlocks)
    return channel.pending_lock_count()


def _address(text: Any) -> Address:
    return Address(parse_hex(str(text), size=KEY_SIZE, what="node id"))


def _channel_id(text: Any) -> ChannelId:
    return ChannelId(parse_hex(str(text), size=32, what="channel id"))


def _amount(params: dict[str, Any], name: str) -> int:
    """A positive u64 amount, worded as the CLI words it."""
    if params.get(name) is None:
        raise RpcParamError(f"missing parameter {name!r}")
    try:
        return positive_amount(params[name], name)
    except UserError as error:
        raise RpcParamError(str(error)) from None


def register_channel_api(node: Node) -> None:
    manager, payments, rpc = node.channels, node.payments, node.rpc

    async def open_channel(params: dict[str, Any]) -> dict[str, Any]:
        partner = parsed_param(params, "node_id", _address)
        amount = _amount(params, "amount")
        settle_timeout = param(params, "settle_timeout", int, default=DEFAULT_SETTLE_TIMEOUT)
        wait = param(params, "wait", bool, default=True)
        reveal = manager.config.reveal_timeout
        if settle_timeout < max(MIN_SETTLE_TIMEOUT, 2 * reveal):
            raise UserError(
                f"settle_timeout must be at least {max(MIN_SETTLE_TIMEOUT, 2 * reveal)} blocks"
            )
        if partner == node.node_id:
            raise UserError("cannot open a channel with ourselves")
        existing = manager.channel_with(partner)
        if existing is not None:
            raise UserError(
                f"a channel with this peer is already open: {existing.channel_id.hex()}"
            )
        if NodeId(partner) not in node.peers.sessions:
            raise UserError(
                f"not connected to {short_hex(partner)}: open a channel only with a connected "
                "peer (connect first, or give NODE_ID@HOST:PORT)"
            )
        balance = (await node.link.account(node.node_id)).pending_balance
        if balance < amount:
            raise UserError(f"layer-1 balance {balance} is less than {amount}")
        channel_id, _opening = await node.wallet.open_channel(partner, settle_timeout)
        await manager.add_channel(
            Channel(
                node.chain_id,
                channel_id,
                node.node_id,
                partner,
                True,
                settle_timeout,
                manager.config,
            )
        )
        await node.wallet.send(ChannelDeposit(channel_id, node.node_id, amount))
        if wait:
            await manager.wait_until(lambda: _usable_with(manager.channels[channel_id], amount))
        return channel_json(manager.channels[channel_id])

    async def deposit(params: dict[str, Any]) -> dict[str, Any]:
        channel_id = parsed_param(params, "channel_id", _channel_id)
        total = _amount(params, "total")
        channel = manager.channels.get(channel_id)
        if channel is None:
            # Opened by the partner, perhaps in a block our watcher has not reached yet.
            record = await node.link.channel(channel_id)
            if record is None or not record.is_participant(node.node_id):
                raise UserError(f"unknown channel {channel_id.hex()}")
            await manager.wait_until(lambda: channel_id in manager.channels)
            channel = manager.channels[channel_id]
        if total < channel.our_deposit:
            raise UserError(f"the total deposit never falls (now {channel.our_deposit})")
        await node.wallet.send(ChannelDeposit(channel_id, node.node_id, total), wait=True)
        await manager.wait_until(lambda: manager.channels[channel_id].our_deposit >= total)
        return channel_json(manager.channels[channel_id])

    async def channels(params: dict[str, Any]) -> list[dict[str, Any]]:
        return [channel_json(channel) for channel in manager.channels.values()]

    async def close(params: dict[str, Any]) -> dict[str, Any]:
        channel_id = parsed_param(params, "channel_id", _channel_id)
        force = param(params, "force", bool, default=False)
        cheat = param(params, "cheat", bool, default=False)
        wait = param(params, "wait", bool, default=True)
        if cheat and not (force and node.config.dev):
            raise UserError("--cheat needs --force, on a node started with --dev")
        if force:
            await manager.force_close(channel_id, cheat=cheat)
        else:
            with trio.move_on_after(COOPERATIVE_REPLY_SECONDS) as no_reply:
                refusal = await manager.request_cooperative_settle(channel_id)
            if no_reply.cancelled_caught:
                raise UserError("the partner did not answer the cooperative close: use --force")
            if refusal is not None:
                raise UserError(
                    f"the partner refused to settle cooperatively ({refusal}): use --force"
                )
        if wait and force:
            await manager.wait_until(lambda: _settled(manager.channels[channel_id]))
        elif wait:
            # Until settled, or until the terms expire unused (then it falls back to a forced
            # close, which the user should hear about rather than wait through unknowingly).
            await manager.wait_until(
                lambda: (
                    _settled(manager.channels[channel_id])
                    or manager.channels[channel_id].coop_expiration is None
                )
            )
            channel = manager.channels[channel_id]
            if channel.status != ChannelStatus.SETTLED:
                raise UserError(channel.note or "the cooperative close did not land in time")
        return channel_json(manager.channels[channel_id])

    async def send(params: dict[str, Any]) -> dict[str, Any]:
        payee = parsed_param(params, "node_id", _address)
        amount = _amount(params, "amount")
        payment = await payments.send(payee, amount)
        return await _final_or_pending(payments, payment, params)

    async def pay(params: dict[str, Any]) -> dict[str, Any]:
        payment = await payments.pay(param(params, "invoice", str))
        return await _final_or_pending(payments, payment, params)

    async def decode(params: dict[str, Any]) -> dict[str, Any]:
        return payments.decode(param(params, "invoice", str))

    async def invoice(params: dict[str, Any]) -> dict[str, Any]:
        amount = _amount(params, "amount")
        description = param(params, "description", str, default="")
        expiry = param(params, "expiry", int, default=None)
        if expiry is not None and not 0 < expiry < 2**32:
            raise RpcParamError("expiry must be a positive number of seconds")
        if len(description) > 640:
            raise RpcParamError("the description is at most 640 characters")
        return await payments.create_invoice(amount, description, expiry)

    async def list_payments(params: dict[str, Any]) -> list[dict[str, Any]]:
        prefix = param(params, "payment_hash", str, default=None)
        if prefix is not None:
            prefix = prefix.lower()
            if not prefix or len(prefix) > 64 or any(c not in "0123456789abcdef" for c in prefix):
                raise RpcParamError("payment_hash must be hex (a whole hash or its start)")
        status = param(params, "status", str, default=None)
        if status is not None and status not in PAYMENT_STATUSES:
            raise RpcParamError(f"status must be one of {', '.join(PAYMENT_STATUSES)}")
        return await payments.payments(payment_hash=prefix, status=status)

    async def list_invoices(params: dict[str, Any]) -> list[dict[str, Any]]:
        return await payments.invoices()

    async def debug_send_many(params: dict[str, Any]) -> dict[str, Any]:
        """Dev nodes only: COUNT spontaneous payments of AMOUNT to a peer, CONCURRENCY at a
        time, through the same path as `send`; latency measured per payment in the node."""
        if not node.config.dev:
            raise UserError("debug_send_many needs a node started with --dev")
        payee = parsed_param(params, "node_id", _address)
        amount = _amount(params, "amount")
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
                try:
                    payment = await payments.send(payee, amount)
                    await payment.done.wait()
                    outcomes[payment.status] += 1
                except UserError:
                    outcomes["failed"] += 1
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
        ("open", open_channel),
        ("deposit", deposit),
        ("channels", channels),
        ("close", close),
        ("send", send),
        ("pay", pay),
        ("decode", decode),
        ("invoice", invoice),
        ("payments", list_payments),
        ("invoices", list_invoices),
        ("debug_send_many", debug_send_many),
    ):
        rpc.register(name, handler)


def _usable_with(channel: Channel, amount: int) -> bool:
    return channel.status == ChannelStatus.OPEN and channel.our_deposit >= amount


def _settled(channel: Channel) -> bool:
    return channel.status == ChannelStatus.SETTLED and not channel.settled_unlocks


async def _final_or_pending(
    payments: PaymentService, payment: OutgoingPayment, params: dict[str, Any]
) -> dict[str, Any]:
    """The result once final, or `pending` after the call's `timeout` seconds (if given)."""
    await payments.wait_final(payment, param(params, "timeout", float, default=None))
    return payment_result(payment)
