"""The node's composition root: identity, store, layer 1, channels, payments, peers, RPC.

`open_node` loads everything that can fail before serving (key file permissions, the data dir
lock, the database, layer 1's chain id, which must match the one this data dir was created for).
`Node.run` then starts in the order crash safety needs: the stored channels are loaded, the
chain watcher catches up with every block missed while down, and only then are peers redialled
(and re-synced) and the RPC and the `node.json` ready file offered.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
import trio

from p2pchan.core.channel.state import ChannelConfig
from p2pchan.crypto.keys import KEY_FILE_NAME, Identity, load_key_file
from p2pchan.errors import ChainError, StoreError, UserError
from p2pchan.files import DatadirLock, write_file_durably
from p2pchan.l1.client import L1Client
from p2pchan.l1.wallet import Wallet
from p2pchan.net.chain_actions import ChainActions
from p2pchan.net.chain_watch import ChainWatcher
from p2pchan.net.channels import ChannelManager
from p2pchan.net.l1_link import L1Link
from p2pchan.net.misbehave import Attacks, Misbehave
from p2pchan.net.payments import PaymentService
from p2pchan.net.peer import PeerSession
from p2pchan.net.peers import PeerConfig, PeerManager
from p2pchan.net.rpc import RpcServer
from p2pchan.storage.channels import load_processed_block
from p2pchan.storage.db import NodeDatabase
from p2pchan.types import Address, ChainId, NodeId
from p2pchan.wire.channel_messages import ChannelMessage
from p2pchan.wire.peer_messages import PeerMessage

log = structlog.get_logger(__name__)

READY_FILE = "node.json"
L1_STARTUP_TIMEOUT = 30.0


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
    ) -> None:
        self.config = config
        self.identity = identity
        self.node_id = identity.node_id
        self._lock = lock
        self.database = database
        self.chain_id = chain_id
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
        )
        self.channels = ChannelManager(
            identity,
            chain_id,
            database,
            self.actions,
            self._session_of,
            config.channel,
            Attacks(config.misbehave),
        )
        self.payments = PaymentService(
            self.channels, self.link, is_online=lambda peer: self._session_of(peer) is not None
        )
        processed = database.run_now(load_processed_block) or 0
        self.chain = ChainWatcher(
            config.l1_host, config.l1_port, self.channels, self.link, processed=processed
        )
        self.rpc = RpcServer()
        self._cancel_scope = trio.CancelScope()

    async def _on_message(self, session: PeerSession, messages: list[PeerMessage]) -> None:
        """Channel messages that arrived together are handled per channel, in order, in one
        step each."""
        per_channel: dict[bytes, list[ChannelMessage]] = {}
        for message in messages:
            if isinstance(message, ChannelMessage):
                per_channel.setdefault(message.channel_id, []).append(message)
            else:
                log.info("peer_message_unhandled", type=type(message).__name__)
        for batch in per_channel.values():
            await self.channels.on_messages(session, batch)

    def _session_of(self, node_id: Address) -> PeerSession | None:
        return self.peers.sessions.get(NodeId(node_id))

    async def _on_session(self, session: PeerSession) -> None:
        await self.channels.on_session_started(session)

    async def run(
        self, *, task_status: trio.TaskStatus[dict[str, Any]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until `stop` or cancellation; `started` with the ready-file contents."""
        from p2pchan.net.node_api import register_node_api  # the API needs a whole Node

        register_node_api(self)
        ready_path = self.config.datadir / READY_FILE
        with self._cancel_scope:
            try:
                async with trio.open_nursery() as nursery:
                    self.channels.load()
                    nursery.start_soon(self.link.run)
                    await nursery.start(self.actions.run)
                    await nursery.start(self.channels.run)
                    height = await nursery.start(self.chain.run)  # caught up: now peers
                    log.info("node_caught_up", height=height, channels=len(self.channels.channels))
                    port = await nursery.start(
                        self.peers.run, self.config.listen_host, self.config.listen_port
                    )
                    rpc_path = await nursery.start(self.rpc.serve, self.config.datadir)
                    ready = {
                        "node_id": self.node_id.hex(),
                        "host": self.peers.listen_host,
                        "port": port,
                        "rpc": str(rpc_path),
                        "pid": os.getpid(),
                    }
                    write_file_durably(ready_path, json.dumps(ready).encode() + b"\n")
                    log.info("node_ready", host=ready["host"], port=port, alias=self.config.alias)
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
