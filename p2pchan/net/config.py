"""A node's settings, as `node start` gives them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from p2pchan.core.channel.state import ChannelConfig
from p2pchan.core.gossip.state import FeePolicy
from p2pchan.net.misbehave import Misbehave
from p2pchan.net.peers import PeerConfig


@dataclass(frozen=True)
class NodeConfig:
    datadir: Path
    listen_host: str
    listen_port: int
    l1_host: str
    l1_port: int
    alias: str = ""
    dev: bool = False
    misbehave: frozenset[Misbehave] = frozenset()  # dev attack modes (refused without `dev`)
    peer: PeerConfig = field(default_factory=PeerConfig)
    channel: ChannelConfig = field(default_factory=ChannelConfig)
    fee_policy: FeePolicy = field(default_factory=FeePolicy)  # for our channels, until setfees
