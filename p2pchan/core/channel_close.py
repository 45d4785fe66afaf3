"""Cooperative settlement: both participants sign the final balances and the contract pays out
at once.

Only with no lock pending and no update in flight either way. The requester signs terms that
expire a few blocks ahead; from then until that expiration neither side sends nor accepts
transfers on the channel, whether or not the partner signs too.
"""

from __future__ import annotations

from dataclasses import replace

from p2pchan.core.channel import Channel, ChannelStatus
from p2pchan.core.coop_settle import CooperativeSettle
from p2pchan.core.outputs import CooperativeSettleOnChain, Output, Send
from p2pchan.crypto.keys import Identity
from p2pchan.crypto.signing import SigningTag, is_valid
from p2pchan.errors import RemoteProtocolError, UserError
from p2pchan.wire.channel_messages import SettleRequest, SettleResponse

COOP_VALIDITY_BLOCKS = 20


class CooperativeCloseRefused(UserError):
    """A cooperative close is not possible now; the message says why."""


def _settled_view_problem(channel: Channel) -> str | None:
    """Why the balances are not final in our view, or None."""
    if channel.status not in (ChannelStatus.OPEN, ChannelStatus.CLOSING):
        return f"the channel is {channel.status}"
    ours, theirs = channel.ours, channel.theirs
    if ours.in_flight or ours.has_work():
        return "an update of ours is still in flight"
    if ours.acked.locks or theirs.accepted.locks:
        return "locks are pending"
    return None


def _terms(channel: Channel, expiration: int) -> CooperativeSettle:
    ours_balance = channel.local_balance()
    theirs_balance = channel.remote_balance()
    if channel.we_are_a:
        deposits = (channel.our_deposit, channel.partner_deposit)
        balances = (ours_balance, theirs_balance)
    else:
        deposits = (channel.partner_deposit, channel.our_deposit)
        balances = (theirs_balance, ours_balance)
    return CooperativeSettle(channel.chain_id, channel.channel_id, *deposits, *balances, expiration)


def request_settle(
    channel: Channel, identity: Identity, height: int
) -> tuple[Channel, list[Output]]:
    problem = _settled_view_problem(channel)
    if problem is not None:
        raise CooperativeCloseRefused(f"cannot settle cooperatively: {problem}")
    expiration = height + COOP_VALIDITY_BLOCKS
    terms = _terms(channel, expiration).encode()
    signature = identity.sign(SigningTag.COOP_SETTLE, terms)
    channel = replace(
        channel.moved_to(ChannelStatus.CLOSING),
        coop_expiration=expiration,
        coop_terms=terms,
        coop_signature=signature,
    )
    return channel, [Send(SettleRequest(channel.channel_id, terms, signature))]


def on_settle_request(
    channel: Channel, message: SettleRequest, identity: Identity, height: int
) -> tuple[Channel, list[Output]]:
    """Sign the partner's terms if they match our view exactly; otherwise say why not."""

    def refuse(reason: str) -> tuple[Channel, list[Output]]:
        return channel, [Send(SettleResponse(channel.channel_id, None, reason))]

    problem = _settled_view_problem(channel)
    if problem is not None:
        return refuse(problem)
    try:
        terms = CooperativeSettle.decode(message.terms)
    except RemoteProtocolError as error:
        return refuse(f"malformed terms: {error}")
    if not is_valid(channel.partner, SigningTag.COOP_SETTLE, message.terms, message.signature):
        return refuse("the terms are not signed by you")
    if not height < terms.expiration_block <= height + 2 * COOP_VALIDITY_BLOCKS:
        return refuse(f"expiration {terms.expiration_block} is not a few blocks after {height}")
    if terms != _terms(channel, terms.expiration_block):
        return refuse("the balances or deposits differ from mine")
    signature = identity.sign(SigningTag.COOP_SETTLE, message.terms)
    channel = replace(
        channel.moved_to(ChannelStatus.CLOSING),
        coop_expiration=terms.expiration_block,
        coop_terms=message.terms,
        coop_signature=signature,
    )
    return channel, [Send(SettleResponse(channel.channel_id, signature, ""))]


def on_settle_response(
    channel: Channel, message: SettleResponse
) -> tuple[Channel, list[Output], str | None]:
    """Combine both signatures into the transaction; or the partner's reason for refusing."""
    if channel.coop_terms is None or channel.coop_signature is None:
        return channel, [], "no cooperative settle was requested"
    if message.signature is None:
        return channel, [], message.refusal or "refused"
    if not is_valid(channel.partner, SigningTag.COOP_SETTLE, channel.coop_terms, message.signature):
        return channel, [], "the partner's signature does not verify"
    ours, theirs = channel.coop_signature, message.signature
    signature_a, signature_b = (ours, theirs) if channel.we_are_a else (theirs, ours)
    output = CooperativeSettleOnChain(
        channel.channel_id, channel.coop_terms, signature_a, signature_b
    )
    return channel, [output], None


def on_cooperatively_settled(channel: Channel) -> Channel:
    return replace(channel.moved_to(ChannelStatus.SETTLED), coop_expiration=None)
