"""What gossip needs to know of layer 1: every channel on the chain, not only ours.

An announcement is accepted only for a channel layer 1 shows open between its two nodes, and
the graph's capacity is the channel's total deposit on layer 1, never a number from gossip. The
node already receives every contract event of every block (the chain watcher); it applies each
to a `ChainChannels` before handing the block to gossip, so gossip reads a view exactly as
current as the node's own height. `ChainView` is the read-only face gossip takes, so a test or
another store can stand in for it.

A channel stays in the view from `ChannelOpened` until it settles (forced or cooperative);
after `ChannelClosed` it is kept, not open, so a late announcement of it is told apart from
one of a channel that never existed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Protocol

from p2pchan.l1.events import (
    ChannelClosed,
    ChannelCooperativelySettled,
    ChannelDeposited,
    ChannelOpened,
    ChannelSettled,
    Event,
)
from p2pchan.types import Address, ChannelId


@dataclass(frozen=True, slots=True)
class ChainChannel:
    """A channel as layer 1 shows it."""

    channel_id: ChannelId
    participant_a: Address
    participant_b: Address
    settle_timeout: int
    deposit_a: int = 0
    deposit_b: int = 0
    is_open: bool = True

    @property
    def capacity(self) -> int:
        return self.deposit_a + self.deposit_b

    def is_between(self, node1: bytes, node2: bytes) -> bool:
        return {self.participant_a, self.participant_b} == {node1, node2}


class ChainView(Protocol):
    @property
    def height(self) -> int:
        """The highest block whose events this view holds."""
        ...

    def channel(self, channel_id: ChannelId) -> ChainChannel | None:
        """The channel, while open or closing; None if layer 1 has no such channel (yet)
        or it has settled."""
        ...


class ChainChannels:
    """The node's view of every channel on layer 1, built from contract events in order."""

    __slots__ = ("_channels", "height")

    def __init__(
        self, channels: dict[ChannelId, ChainChannel] | None = None, height: int = 0
    ) -> None:
        self._channels: dict[ChannelId, ChainChannel] = dict(channels or {})
        self.height = height

    def channel(self, channel_id: ChannelId) -> ChainChannel | None:
        return self._channels.get(channel_id)

    def channels(self) -> list[ChainChannel]:
        return list(self._channels.values())

    def __len__(self) -> int:
        return len(self._channels)

    def apply_block(self, height: int, events: Iterable[Event]) -> list[ChannelId]:
        """Apply a block's events in order; return the ids whose records changed (persist
        `channel(id)` for each, deleting the row where it is None)."""
        changed = [channel_id for event in events if (channel_id := self.apply(event))]
        self.height = height
        return list(dict.fromkeys(changed))

    def apply(self, event: Event) -> ChannelId | None:
        """Apply one contract event; return the id of the channel whose record changed (to be
        persisted: `channel(id)` is its new record, or None once settled), else None."""
        if isinstance(event, ChannelOpened):
            self._channels[event.channel_id] = ChainChannel(
                event.channel_id, event.participant_a, event.participant_b, event.settle_timeout
            )
            return event.channel_id
        if isinstance(event, (ChannelSettled, ChannelCooperativelySettled)):
            return event.channel_id if self._channels.pop(event.channel_id, None) else None
        if isinstance(event, ChannelDeposited):
            known = self._channels.get(event.channel_id)
            if known is None:
                return None
            if event.participant == known.participant_a:
                known = replace(known, deposit_a=event.total_deposit)
            elif event.participant == known.participant_b:
                known = replace(known, deposit_b=event.total_deposit)
            else:
                return None
            self._channels[known.channel_id] = known
            return known.channel_id
        if isinstance(event, ChannelClosed):
            known = self._channels.get(event.channel_id)
            if known is None:
                return None
            self._channels[known.channel_id] = replace(known, is_open=False)
            return known.channel_id
        return None
