"""Plasma confirmations handed over directly between users' nodes, beside the operator's relay.

A receiver may spend (or exit) an output only with the confirmations of every input owner of
the transaction that made it. The operator relays them, but an operator that withholds one
could strand the receiver's coin; so a sender's node also pushes its confirmation to a
receiver it is connected to (`plasma_confirmations`), and a receiver's node still missing one
asks a connected input owner for it (`plasma_confirmations_request`). Both ids are odd: a peer
without Plasma skips them. A confirmation is a signature over the exact bytes
`"p2pchan/plasma_confirm/1" || tx_hash || root` (see `wire/plasma.py`); the receiving watcher
checks it against the root layer 1 recorded before it keeps it, so a peer can hand over nothing
false.
"""

from __future__ import annotations

from dataclasses import dataclass

from p2pchan.types import PlasmaId
from p2pchan.wire.fields import BYTES32
from p2pchan.wire.peer_messages import PEER_MESSAGES, PeerMessage, PeerType
from p2pchan.wire.plasma import MAX_INPUTS, Confirmation
from p2pchan.wire.records import NestedList, wire


class PlasmaMessage(PeerMessage):
    __slots__ = ()
    plasma_id: PlasmaId
    tx_hash: bytes


@PEER_MESSAGES.message(PeerType.PLASMA_CONFIRMATIONS)
@dataclass(frozen=True, slots=True)
class PlasmaConfirmations(PlasmaMessage):
    """The confirmations of a transaction the sender holds (its own, at least)."""

    plasma_id: PlasmaId = wire(BYTES32)
    tx_hash: bytes = wire(BYTES32)
    confirmations: tuple[Confirmation, ...] = wire(NestedList(Confirmation, MAX_INPUTS))


@PEER_MESSAGES.message(PeerType.PLASMA_CONFIRMATIONS_REQUEST)
@dataclass(frozen=True, slots=True)
class PlasmaConfirmationsRequest(PlasmaMessage):
    """Answered with `plasma_confirmations` if the peer holds any for the transaction."""

    plasma_id: PlasmaId = wire(BYTES32)
    tx_hash: bytes = wire(BYTES32)
