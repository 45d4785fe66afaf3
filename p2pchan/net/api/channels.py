"""The RPC methods about channels: open, deposit, channels, close.

`open` takes only a connected peer: a channel with a node we cannot reach would lock the deposit
on layer 1 until a forced close and its whole window gave it back. Methods that wait (for
blocks) rely on the caller's deadline: the CLI's --timeout ends the call, never the work it
started.
"""

from __future__ import annotations

from typing import Any

import trio

from p2pchan.core.channel.state import Channel, ChannelStatus
from p2pchan.core.inputs import ActionCloseCooperatively, ActionForceClose, ActionTrackChannel
from p2pchan.core.timing import min_settle_timeout
from p2pchan.errors import UserError
from p2pchan.l1.state import MIN_SETTLE_TIMEOUT
from p2pchan.l1.transactions import ChannelDeposit
from p2pchan.net.api.context import NodeContext
from p2pchan.net.api.params import address, amount, channel_id
from p2pchan.net.rpc import RpcServer, param, parsed_param
from p2pchan.types import NodeId, short_hex

DEFAULT_SETTLE_TIMEOUT = 100
COOPERATIVE_REPLY_SECONDS = 15.0


def channel_json(channel: Channel) -> dict[str, Any]:
    """A channel as `channels` lists it (the JSON fields are a contract of the CLI)."""
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
        # Per direction, for checks from outside (chaos runs, invariant 5): the nonce and
        # transferred amount of our newest counter-signed proof, the highest nonce we ever
        # signed, and the nonce and transferred amount of the partner's newest proof we accepted.
        "sent_nonce": channel.ours.acked.nonce,
        "sent_transferred": channel.ours.acked.transferred,
        "signed_nonce": channel.ours.signed_nonce,
        "received_nonce": channel.theirs.accepted.nonce,
        "received_transferred": channel.theirs.accepted.transferred,
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


def register(rpc: RpcServer, node: NodeContext) -> None:
    driver = node.driver
    channels_of = driver.state.channels
    us = node.identity.node_id

    async def open_channel(params: dict[str, Any]) -> dict[str, Any]:
        partner = parsed_param(params, "node_id", address)
        deposit = amount(params, "amount")
        settle_timeout = param(params, "settle_timeout", int, default=DEFAULT_SETTLE_TIMEOUT)
        wait = param(params, "wait", bool, default=True)
        smallest = min_settle_timeout(driver.state.config.reveal_timeout, MIN_SETTLE_TIMEOUT)
        if settle_timeout < smallest:
            raise UserError(f"settle_timeout must be at least {smallest} blocks")
        if partner == us:
            raise UserError("cannot open a channel with ourselves")
        existing = driver.state.channel_with(partner)
        if existing is not None:
            raise UserError(
                f"a channel with this peer is already open: {existing.channel_id.hex()}"
            )
        if NodeId(partner) not in node.peers.sessions:
            raise UserError(
                f"not connected to {short_hex(partner)}: open a channel only with a connected "
                "peer (connect first, or give NODE_ID@HOST:PORT)"
            )
        balance = (await node.link.account(us)).pending_balance
        if balance < deposit:
            raise UserError(f"layer-1 balance {balance} is less than {deposit}")
        opened, _opening = await node.wallet.open_channel(partner, settle_timeout)
        await driver.step([ActionTrackChannel(opened, partner, settle_timeout)])
        await node.wallet.send(ChannelDeposit(opened, us, deposit))
        if wait:
            await driver.wait_until(lambda: _usable_with(channels_of[opened], deposit))
        return channel_json(channels_of[opened])

    async def deposit(params: dict[str, Any]) -> dict[str, Any]:
        target = parsed_param(params, "channel_id", channel_id)
        total = amount(params, "total")
        channel = channels_of.get(target)
        if channel is None:
            # Opened by the partner, perhaps in a block our watcher has not reached yet.
            record = await node.link.channel(target)
            if record is None or not record.is_participant(us):
                raise UserError(f"unknown channel {target.hex()}")
            await driver.wait_until(lambda: target in channels_of)
            channel = channels_of[target]
        if total < channel.our_deposit:
            raise UserError(f"the total deposit never falls (now {channel.our_deposit})")
        await node.wallet.send(ChannelDeposit(target, us, total), wait=True)
        await driver.wait_until(lambda: channels_of[target].our_deposit >= total)
        return channel_json(channels_of[target])

    async def channels(params: dict[str, Any]) -> list[dict[str, Any]]:
        return [channel_json(channel) for channel in channels_of.values()]

    async def close(params: dict[str, Any]) -> dict[str, Any]:
        target = parsed_param(params, "channel_id", channel_id)
        force = param(params, "force", bool, default=False)
        cheat = param(params, "cheat", bool, default=False)
        wait = param(params, "wait", bool, default=True)
        if cheat and not (force and node.config.dev):
            raise UserError("--cheat needs --force, on a node started with --dev")
        if force:
            await driver.step([ActionForceClose(target, cheat)])
        else:
            driver.forget_settle_reply(target)
            await driver.step([ActionCloseCooperatively(target)])
            with trio.move_on_after(COOPERATIVE_REPLY_SECONDS) as no_reply:
                refusal = await driver.settle_reply(target)
            if no_reply.cancelled_caught:
                raise UserError("the partner did not answer the cooperative close: use --force")
            if refusal is not None:
                raise UserError(
                    f"the partner refused to settle cooperatively ({refusal}): use --force"
                )
        if wait and force:
            await driver.wait_until(lambda: _settled(channels_of[target]))
        elif wait:
            # Until settled, or until the terms expire unused (then it falls back to a forced
            # close, which the user should hear about rather than wait through unknowingly).
            await driver.wait_until(
                lambda: _settled(channels_of[target]) or channels_of[target].coop_expiration is None
            )
            channel = channels_of[target]
            if channel.status != ChannelStatus.SETTLED:
                raise UserError(channel.note or "the cooperative close did not land in time")
        return channel_json(channels_of[target])

    for name, handler in (
        ("open", open_channel),
        ("deposit", deposit),
        ("channels", channels),
        ("close", close),
    ):
        rpc.register(name, handler)


def _usable_with(channel: Channel, deposit: int) -> bool:
    return channel.status == ChannelStatus.OPEN and channel.our_deposit >= deposit


def _settled(channel: Channel) -> bool:
    return channel.status == ChannelStatus.SETTLED and not channel.settled_unlocks
