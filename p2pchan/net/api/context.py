"""What the RPC methods reach: the node's parts, passed in (the API never imports the node)."""

from __future__ import annotations

from dataclasses import dataclass

from p2pchan.crypto.keys import Identity
from p2pchan.l1.wallet import Wallet
from p2pchan.net.chain_watch import ChainWatcher
from p2pchan.net.config import NodeConfig
from p2pchan.net.driver import Driver
from p2pchan.net.l1_link import L1Link
from p2pchan.net.peers import PeerManager
from p2pchan.net.plasma_wallets import PlasmaWallets


@dataclass(frozen=True)
class NodeContext:
    config: NodeConfig
    identity: Identity
    driver: Driver
    peers: PeerManager
    link: L1Link
    wallet: Wallet
    chain: ChainWatcher
    plasma: PlasmaWallets
