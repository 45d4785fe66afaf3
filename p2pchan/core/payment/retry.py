"""What a failed routed attempt teaches its payer: which hop failed and why, read from the
failure that hop sealed for us (`crypto.sphinx_failure`), and what to try next.

The failing hop's outgoing channel is left out of the next attempts and its direction penalised
in mission control (every direction before it forwarded: a success) — unless the hop sent a
channel_update newer than ours with a fee or limit failure: then the update is applied to our
graph like any gossip (checked, signed) and the next attempt pays what it asks. A
failure from the payee itself (no invoice, wrong amount) is final: no other route changes it.
A failure nobody can read (a hop on the way corrupted it) leaves out every channel of the route
but our own.
"""

from __future__ import annotations

from typing import NamedTuple

from p2pchan.core.gossip import machine as gossip
from p2pchan.core.payment import routes
from p2pchan.core.payment.state import Attempt
from p2pchan.core.state import NodeState
from p2pchan.crypto.sphinx import OnionError, shared_secrets
from p2pchan.crypto.sphinx_failure import read_failure
from p2pchan.errors import RemoteProtocolError
from p2pchan.types import Address, ChannelId, NodeId, SecretHash, short_hex
from p2pchan.wire.codec import unpack
from p2pchan.wire.gossip_messages import ChannelUpdate
from p2pchan.wire.onion_payload import FailureMessage


class Learned(NamedTuple):
    final: bool  # no other route can help
    why: str
    excluded: frozenset[ChannelId]  # for the next attempt


def learn(state: NodeState, secrethash: SecretHash, attempt: Attempt) -> Learned:
    route = attempt.route
    hops = route.hops
    directions = route.directions()
    now = state.now_ms
    if attempt.failure is None:
        # Our partner failed the lock without an onion failure: it could not read ours.
        state.mission.report_failure(*directions[0], now)
        why = f"{short_hex(hops[0].node_id)} could not read the onion"
        return Learned(False, why, attempt.excluded | {ChannelId(hops[0].channel_id)})
    key = routes.session_key(state, secrethash, attempt.number)
    secrets = shared_secrets([hop.node_id for hop in hops], key)
    try:
        index, message = read_failure(secrets, attempt.failure)
        failure = FailureMessage.decode(message)
    except (OnionError, RemoteProtocolError):
        rest = frozenset(ChannelId(hop.channel_id) for hop in hops[1:])
        for direction in directions[1:]:
            state.mission.report_failure(*direction, now)
        return Learned(False, "a hop returned an unreadable failure", attempt.excluded | rest)
    node = hops[index].node_id
    if index == len(hops) - 1:
        return Learned(True, f"the payee refused the payment ({failure.code})", attempt.excluded)
    failed_channel = ChannelId(hops[index + 1].channel_id)
    why = f"{short_hex(node)} could not forward ({failure.code})"
    if failure.update and _apply_update(
        state, NodeId(Address(node)), failed_channel, failure.update
    ):
        # Its fees or limits changed, and now we know them: try again with them.
        return Learned(False, why, attempt.excluded)
    state.mission.report_attempt(directions, index + 1, now)
    return Learned(False, why, attempt.excluded | {failed_channel})


def _apply_update(state: NodeState, node: NodeId, channel_id: ChannelId, encoded: bytes) -> bool:
    """A failing hop's current channel_update of the channel it failed on: into our graph, if
    it checks out and is newer than ours. Its gossip outputs are dropped: the hop floods its
    own updates, and it is not our peer to score."""
    try:
        update = ChannelUpdate.from_wire(unpack(encoded, max_len=len(encoded)))
    except RemoteProtocolError:
        return False
    if update.body.from_node != node or update.body.channel_id != channel_id:
        return False
    key = (channel_id, node)
    before = state.network.updates.get(key)
    gossip.on_gossip(state.network, node, update, state.now_ms, state.chain_view)
    return state.network.updates.get(key) is not before
