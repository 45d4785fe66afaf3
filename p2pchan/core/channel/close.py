"""Cooperative settlement: both participants sign the final balances and the contract pays out
at once.

Only with no lock pending and no update in flight either way. The requester signs terms that
expire a few blocks ahead; from then until that expiration neither side sends nor accepts
transfers on the channel, whether or not the partner signs too. The requester submits the
settle, again on every block until the chain shows it (`core/channel/chain.py`); terms that expire
unused make a close our user asked for a forced one.
"""

from __future__ import annotations

from dataclasses import replace

from p2pchan.core.channel.chain import cooperative_settle_output
from p2pchan.core.channel.events import ChannelOutput, Fault, Send
from p2pchan.core.channel.receive import REFUSAL_POINTS
from p2pchan.core.channel.state import Channel, ChannelStatus
from p2pchan.crypto.keys import Identity
from p2pchan.crypto.signing import SigningTag, is_valid
from p2pchan.errors import RemoteProtocolError, UserError
from p2pchan.wire.channel_messages import SettleRequest, SettleResponse
from p2pchan.wire.coop_settle import CooperativeSettle

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
) -> tuple[Channel, list[ChannelOutput]]:
    """Sign final balances and ask the partner to sign them too. Asking again while our terms
    last sends the same terms (the partner answers them again without counting it against us)."""
    if channel.coop_we_asked and channel.coop_terms is not None and channel.coop_signature:
        request = SettleRequest(channel.channel_id, channel.coop_terms, channel.coop_signature)
        return channel, [Send(request)]
    problem = _settled_view_problem(channel)
    if problem is not None:
        raise CooperativeCloseRefused(f"cannot settle cooperatively: {problem}")
    if channel.coop_expiration is not None:
        raise CooperativeCloseRefused(
            "cannot settle cooperatively: the partner's cooperative close is pending until "
            f"block {channel.coop_expiration}"
        )
    expiration = height + COOP_VALIDITY_BLOCKS
    terms = _terms(channel, expiration).encode()
    signature = identity.sign(SigningTag.COOP_SETTLE, terms)
    channel = replace(
        channel.moved_to(ChannelStatus.CLOSING),
        coop_expiration=expiration,
        coop_terms=terms,
        coop_signature=signature,
        coop_partner_signature=None,
        coop_we_asked=True,
        note="",
    )
    return channel, [Send(SettleRequest(channel.channel_id, terms, signature))]


def on_settle_request(
    channel: Channel, message: SettleRequest, identity: Identity, height: int
) -> tuple[Channel, list[ChannelOutput]]:
    """Sign the partner's terms if they match our view exactly; otherwise say why not. Terms we
    signed freeze the channel until they expire, so a partner asking for other terms while ours
    are pending, or asking again soon after letting signed terms expire unused, is refused and
    scored (it could otherwise keep the channel from taking payments)."""

    def refuse(reason: str, *, scored: bool = False) -> tuple[Channel, list[ChannelOutput]]:
        outputs: list[ChannelOutput] = [Send(SettleResponse(channel.channel_id, None, reason))]
        if scored:
            outputs.append(Fault(REFUSAL_POINTS, f"cooperative settle request refused: {reason}"))
        return channel, outputs

    problem = _settled_view_problem(channel)
    if problem is not None:
        return refuse(problem)
    if height < channel.coop_refused_until:
        return refuse(
            "terms I signed for you expired unused; I sign no new ones before block "
            f"{channel.coop_refused_until}",
            scored=True,
        )
    if channel.coop_expiration is not None:
        if channel.coop_we_asked:
            return refuse("a cooperative close of mine is pending")
        if (
            message.terms == channel.coop_terms
            and message.signature == channel.coop_partner_signature
        ):
            assert channel.coop_signature is not None
            return channel, [Send(SettleResponse(channel.channel_id, channel.coop_signature, ""))]
        return refuse(
            f"terms I signed are pending until block {channel.coop_expiration}", scored=True
        )
    try:
        terms = CooperativeSettle.decode(message.terms)
    except RemoteProtocolError as error:
        return refuse(f"malformed terms: {error}", scored=True)
    if not is_valid(channel.partner, SigningTag.COOP_SETTLE, message.terms, message.signature):
        return refuse("the terms are not signed by you", scored=True)
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
        coop_partner_signature=message.signature,
        coop_we_asked=False,
    )
    return channel, [Send(SettleResponse(channel.channel_id, signature, ""))]


def on_settle_response(
    channel: Channel, message: SettleResponse
) -> tuple[Channel, list[ChannelOutput], str | None]:
    """Combine both signatures into the transaction (submitted again on every block until the
    chain shows it: `core/channel/chain.py`); or keep the partner's reason for refusing."""
    if not channel.coop_we_asked or channel.coop_terms is None or channel.coop_signature is None:
        return channel, [], "no cooperative settle was requested"
    if message.signature is None:
        refusal = message.refusal or "refused"
        note = f"the partner refused to close cooperatively: {refusal}"
        return replace(channel, note=note[:200]), [], refusal
    if not is_valid(channel.partner, SigningTag.COOP_SETTLE, channel.coop_terms, message.signature):
        return channel, [], "the partner's signature does not verify"
    channel = replace(channel, coop_partner_signature=message.signature)
    output = cooperative_settle_output(channel)
    assert output is not None
    return channel, [output], None


def on_cooperatively_settled(
    channel: Channel, *, balance_ours: int = 0, balance_theirs: int = 0
) -> Channel:
    return replace(
        channel.moved_to(ChannelStatus.SETTLED),
        coop_expiration=None,
        coop_we_asked=False,
        settled_ours=balance_ours,
        settled_theirs=balance_theirs,
    )
