"""The node's composition root: identity, store, layer 1, the driver of the node's core, peers,
the chain watcher, the Plasma wallets, RPC.

`open_node` loads everything that can fail before serving (key file permissions, the data dir
lock, the database, layer 1's chain id, which must match the one this data dir was created for).
`Node.run` then starts in the order crash safety needs: the stored state is loaded (when the node
is built: only what is live, history staying on disk), the chain watcher catches up with every
block missed while down, and only then are peers redialled (and re-synced) and the RPC and the
`node.json` ready file offered. The watcher of each joined child chain starts with them, replays
its chain from layer 1 on its own subscription, and acts only once caught up (see
`net/plasma_watch.py`); the channels do not wait for it.
"""

from __future__ import annotations

import json
import os
from typing import Any

import structlog
import trio

from p2pchan.core.channel.state import ChannelStatus
from p2pchan.core.inputs import (
    ActionAnnounceNode,
    ReceiveChannelMessages,
    ReceiveGossip,
    ReceivePeerConnected,
    ReceivePeerDisconnected,
    Resume,
)
from p2pchan.crypto.keys import KEY_FILE_NAME, Identity, load_key_file
from p2pchan.errors import ChainError, StoreError, UserError
from p2pchan.files import DatadirLock, write_file_durably
from p2pchan.l1.client import L1Client
from p2pchan.l1.wallet import Wallet
from p2pchan.net.api import channels as channels_api
from p2pchan.net.api import graph as graph_api
from p2pchan.net.api import node as node_api
from p2pchan.net.api import payments as payments_api
from p2pchan.net.api import plasma as plasma_api
from p2pchan.net.api.context import NodeContext
from p2pchan.net.chain_actions import ChainActions
from p2pchan.net.chain_watch import ChainWatcher
from p2pchan.net.config import NodeConfig
from p2pchan.net.driver import Driver, now_ms
from p2pchan.net.history import PaymentHistory
from p2pchan.net.l1_link import L1Link
from p2pchan.net.misbehave import Attacks, attack_messages
from p2pchan.net.peer import PeerSession
from p2pchan.net.peers import Dialer, PeerManager
from p2pchan.net.plasma_wallets import PlasmaWallets
from p2pchan.net.rpc import RpcServer
from p2pchan.storage.db import NodeDatabase
from p2pchan.storage.node_store import load_state
from p2pchan.types import Address, ChainId, ChannelId, NodeId
from p2pchan.wire.channel_messages import ChannelMessage
from p2pchan.wire.gossip_messages import GossipMessage
from p2pchan.wire.peer_messages import PeerMessage
from p2pchan.wire.plasma_messages import PlasmaMessage

log = structlog.get_logger(__name__)

READY_FILE = "node.json"
L1_STARTUP_TIMEOUT = 30.0


async def _chain_id(config: NodeConfig) -> ChainId:
    """Layer 1's chain id, retrying for a while if it is not up yet (said once, not per try)."""
    address = f"{config.l1_host}:{config.l1_port}"
    waiting = False
    with trio.move_on_after(L1_STARTUP_TIMEOUT):
        while True:
            try:
                async with L1Client.connect(config.l1_host, config.l1_port) as client:
                    status = await client.status()
                return status.chain_id
            except ChainError as error:
                if not waiting:
                    log.warning(
                        "l1_not_reachable_yet",
                        address=address,
                        reason=error.message,
                        retrying_for_s=L1_STARTUP_TIMEOUT,
                    )
                    waiting = True
                await trio.sleep(0.5)
    raise UserError(
        f"cannot reach layer 1 at {address} (tried for {L1_STARTUP_TIMEOUT:g} s): "
        "is `p2pchan l1 start` running there?"
    )


class Node:
    def __init__(
        self,
        config: NodeConfig,
        identity: Identity,
        lock: DatadirLock,
        database: NodeDatabase,
        chain_id: ChainId,
        *,
        dial: Dialer = trio.open_tcp_stream,
    ) -> None:
        """`dial` opens the byte streams to peers (TCP in a node; tests may run peers in
        memory)."""
        self.config = config
        self.identity = identity
        self.node_id = identity.node_id
        self._lock = lock
        self.database = database
        self.chain_id = chain_id
        self.attacks = Attacks(config.misbehave)
        self.link = L1Link(config.l1_host, config.l1_port)
        self.wallet = Wallet(self.link, identity, chain_id)
        self.actions = ChainActions(self.wallet)
        self.peers = PeerManager(
            identity,
            chain_id,
            database,
            self._on_message,
            config.peer,
            on_session=self._on_session,
            on_session_end=self._on_session_end,
            dial=dial,
        )
        self.history = PaymentHistory(
            database,
            keep_days=config.keep_payments_days,
            protected=lambda: self.driver.state.held_secrethashes(),
            now_ms=now_ms,
        )
        self.history.start()
        state = database.run_now(
            lambda connection: load_state(
                connection,
                identity,
                chain_id,
                config.channel,
                now_ms=now_ms(),
                withhold_decisions=self.attacks.withholds_decisions,
                fee_policy=config.fee_policy,
            )
        )
        self.driver = Driver(
            state, database, self.actions, self._session_of, self.history, self.attacks
        )
        self.chain = ChainWatcher(
            config.l1_host,
            config.l1_port,
            self.driver,
            self.link,
            processed=state.height,
            after_block=self._attack if self.attacks else None,
        )
        self.plasma = PlasmaWallets(
            identity,
            chain_id,
            database,
            self.actions,
            self.wallet,
            self.link,
            dev=config.dev,
            send_to_peer=self._send_to_peer,
        )
        self.rpc = RpcServer()
        context = NodeContext(
            config,
            identity,
            self.driver,
            self.peers,
            self.link,
            self.wallet,
            self.chain,
            self.plasma,
        )
        for area in (node_api, channels_api, payments_api, graph_api, plasma_api):
            area.register(self.rpc, context)
        self._cancel_scope = trio.CancelScope()

    async def _on_message(self, session: PeerSession, messages: list[PeerMessage]) -> None:
        """Channel messages that arrived together are handled per channel, in order, in one
        step each; gossip in one step for all of it (the driver scores the faults they show)."""
        per_channel: dict[ChannelId, list[ChannelMessage]] = {}
        gossip: list[ReceiveGossip] = []
        now = now_ms()
        for message in messages:
            if isinstance(message, ChannelMessage):
                per_channel.setdefault(message.channel_id, []).append(message)
            elif isinstance(message, GossipMessage):
                gossip.append(ReceiveGossip(session.node_id, message, now))
            elif isinstance(message, PlasmaMessage):
                await self.plasma.on_peer_message(session.node_id, message)
            else:
                log.info("peer_message_unhandled", type=type(message).__name__)
        for channel_id, batch in per_channel.items():
            if self.attacks:
                batch, replies = self.attacks.incoming(batch)
                for reply in replies:
                    await session.send(reply)
            received = ReceiveChannelMessages(session.node_id, channel_id, tuple(batch), now)
            await self.driver.step([received])
        if gossip:
            await self.driver.step(gossip)

    def _session_of(self, node_id: Address) -> PeerSession | None:
        return self.peers.sessions.get(NodeId(node_id))

    async def _send_to_peer(self, node_id: Address, message: PeerMessage) -> bool:
        """Queue `message` for a connected peer; False if it is not (or no longer) connected."""
        session = self._session_of(node_id)
        if session is None:
            return False
        try:
            await session.send(message)
        except trio.ClosedResourceError:
            return False
        return True

    async def _on_session(self, session: PeerSession) -> None:
        await self.driver.step([ReceivePeerConnected(session.node_id)])

    def _on_session_end(self, session: PeerSession) -> None:
        self.driver.note(ReceivePeerDisconnected(session.node_id))

    async def _attack(self, height: int) -> None:
        """Dev attack modes that act on their own, once a block."""
        open_channels = [
            channel
            for channel in self.driver.state.channels.values()
            if channel.status == ChannelStatus.OPEN and self._session_of(channel.partner)
        ]
        for message in attack_messages(self.attacks, open_channels, self.identity, height):
            channel = self.driver.state.channels[message.channel_id]
            session = self._session_of(channel.partner)
            if session is not None:
                await session.send(message)

    async def run(
        self, *, task_status: trio.TaskStatus[dict[str, Any]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until `stop` or cancellation; `started` with the ready-file contents."""
        ready_path = self.config.datadir / READY_FILE
        with self._cancel_scope:
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self.link.run)
                    await nursery.start(self.actions.run)
                    await nursery.start(self.driver.run)
                    await nursery.start(self.history.run)
                    height = await nursery.start(self.chain.run)  # caught up: now peers
                    channels = len(self.driver.state.channels)
                    log.info("node_caught_up", height=height, channels=channels)
                    await self.driver.step([Resume(now_ms())])
                    await nursery.start(self.plasma.run)
                    port = await nursery.start(
                        self.peers.run, self.config.listen_host, self.config.listen_port
                    )
                    address = f"{self.peers.listen_host}:{port}"
                    announce = ActionAnnounceNode(self.config.alias, (address,), now_ms())
                    await self.driver.step([announce])
                    rpc_path = await nursery.start(self.rpc.serve, self.config.datadir)
                    ready = {
                        "node_id": self.node_id.hex(),
                        "host": self.peers.listen_host,
                        "port": port,
                        "rpc": str(rpc_path),
                        "pid": os.getpid(),
                    }
                    write_file_durably(ready_path, json.dumps(ready).encode() + b"\n")
                    modes = sorted(mode.value for mode in self.config.misbehave)
                    attacking = {"misbehave": ",".join(modes)} if modes else {}  # chaos forensics
                    log.info(
                        "node_ready",
                        host=ready["host"],
                        port=port,
                        alias=self.config.alias,
                        **attacking,
                    )
                    task_status.started(ready)
            finally:
                ready_path.unlink(missing_ok=True)  # tiny, and must run even while cancelled

    async def stop(self, reason: str) -> None:
        """A clean stop: tell every peer, then end `run` (database writes in flight finish)."""
        log.info("node_stopping", reason=reason)
        with trio.move_on_after(3):
            await self.peers.say_goodbye(reason)
        self._cancel_scope.cancel()

    def close(self) -> None:
        self.database.close()
        self._lock.release()


async def open_node(config: NodeConfig) -> Node:
    if config.misbehave and not config.dev:
        raise UserError("--misbehave needs a node started with --dev")
    identity = load_key_file(config.datadir / KEY_FILE_NAME)
    lock = DatadirLock(config.datadir)
    lock.acquire()
    try:
        database = NodeDatabase.open(config.datadir)
        try:
            chain_id = await _chain_id(config)
            known = database.get_meta("chain_id")
            if known is None:
                database.set_meta_now("chain_id", chain_id)
            elif known != chain_id:
                raise StoreError(
                    f"{config.datadir} belongs to chain {known.hex()[:16]}…, but layer 1 at "
                    f"{config.l1_host}:{config.l1_port} is chain {chain_id.hex()[:16]}…"
                )
        except BaseException:
            database.close()
            raise
    except BaseException:
        lock.release()
        raise
    structlog.contextvars.bind_contextvars(node=identity.node_id.hex())
    return Node(config, identity, lock, database, chain_id)
