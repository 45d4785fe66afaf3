"""The child chains a node has joined: joining one, and a `PlasmaWatch` task for each.

`plasma join HOST:PORT` asks the operator which chain it runs and checks that against layer 1
(the same layer 1 as ours, a chain layer 1 knows, operated by the key the operator claims), then
stores the chain before its watcher starts: after a restart, `run` starts a watcher for every
stored chain, each replaying its chain from layer 1 before it acts. The node does not wait for
those replays (the channels do not depend on them); each Plasma command waits for its own
chain's. Confirmations that peers hand over directly (`wire/plasma_messages.py`) go to the
watcher of their chain.
"""

from __future__ import annotations

import time

import structlog
import trio

from p2pchan.crypto.keys import Identity
from p2pchan.errors import PlasmaError, UserError
from p2pchan.l1.wallet import Wallet
from p2pchan.net.chain_actions import ChainActions
from p2pchan.net.l1_link import L1Link
from p2pchan.net.plasma_watch import PlasmaWatch, SendToPeer
from p2pchan.plasma.client import OperatorClient
from p2pchan.storage.db import NodeDatabase
from p2pchan.storage.plasma import JoinedChain, load_chains, save_chain
from p2pchan.types import Address, ChainId, PlasmaId
from p2pchan.wire.plasma_messages import PlasmaMessage

log = structlog.get_logger(__name__)

DEFAULT_WITHHOLD_TIMEOUT = 10  # layer-1 blocks; below every chain's challenge period (>= 20)
JOIN_TIMEOUT = 10.0


class PlasmaWallets:
    def __init__(
        self,
        identity: Identity,
        chain_id: ChainId,
        database: NodeDatabase,
        actions: ChainActions,
        wallet: Wallet,
        link: L1Link,
        *,
        dev: bool = False,
        send_to_peer: SendToPeer | None = None,
    ) -> None:
        self.identity = identity
        self.send_to_peer = send_to_peer
        self.chain_id = chain_id
        self.database = database
        self.actions = actions
        self.wallet = wallet
        self.link = link
        self.dev = dev
        self.watches: dict[PlasmaId, PlasmaWatch] = {}
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start a watcher for every stored chain; `started` without waiting for them."""
        chains = await self.database.run(load_chains)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for chain in chains:
                self._start(chain)
            task_status.started()
            await trio.sleep_forever()

    def _start(self, chain: JoinedChain) -> PlasmaWatch:
        assert self._nursery is not None
        watch = PlasmaWatch(
            chain, self.identity, self.database, self.actions, self.wallet, self.link, dev=self.dev
        )
        if self.send_to_peer is not None:
            watch.send_to_peer = self.send_to_peer
        self.watches[chain.plasma_id] = watch
        self._nursery.start_soon(watch.run)
        return watch

    async def on_peer_message(self, peer: Address, message: PlasmaMessage) -> None:
        """A peer's Plasma message, for the watcher of its chain (others' chains: ignored)."""
        watch = self.watches.get(message.plasma_id)
        if watch is not None:
            await watch.on_peer_message(peer, message)

    def get(self, plasma_id: PlasmaId | None) -> PlasmaWatch:
        """The watcher of `plasma_id`, or of the one chain joined when it is None."""
        if plasma_id is not None:
            watch = self.watches.get(plasma_id)
            if watch is None:
                raise UserError(f"not a member of child chain {plasma_id.hex()}")
            return watch
        if not self.watches:
            raise UserError("no child chain joined: `p2pchan plasma join HOST:PORT` first")
        if len(self.watches) > 1:
            raise UserError("several child chains joined: say which with --chain PLASMA_ID")
        return next(iter(self.watches.values()))

    async def join(self, host: str, port: int, withhold_timeout: int) -> PlasmaWatch:
        """Join the chain the operator at HOST:PORT runs (again: nothing changes)."""
        try:
            with trio.fail_after(JOIN_TIMEOUT):
                async with OperatorClient.connect(host, port) as client:
                    status = await client.status()
        except trio.TooSlowError:
            raise UserError(f"the operator at {host}:{port} did not answer") from None
        except PlasmaError as error:
            raise UserError(error.message) from None
        if status.chain_id != self.chain_id:
            raise UserError(f"the operator at {host}:{port} runs on another layer 1")
        known = self.watches.get(status.plasma_id)
        if known is not None:
            if (known.chain.host, known.chain.port) != (host, port):
                await known.move_operator(host, port)  # the operator moved: follow it
            return known
        info = await self.link.plasma_chain(status.plasma_id)
        if info is None:
            raise UserError(f"layer 1 knows no child chain {status.plasma_id.hex()}")
        if info.operator != status.operator:
            raise UserError("the operator's key is not the one layer 1 has for its chain")
        if not 1 <= withhold_timeout < info.challenge_period:
            raise UserError(
                f"the withhold timeout must be 1 to {info.challenge_period - 1} blocks "
                f"(below the chain's challenge period)"
            )
        chain = JoinedChain(
            info.plasma_id,
            info.operator,
            host,
            port,
            info.challenge_period,
            info.exit_bond,
            info.created_block,
            withhold_timeout,
            time.time_ns() // 1_000_000,
            None,
            "",
        )
        await self.database.run(save_chain(chain))
        log.info("plasma_joined", plasma_id=info.plasma_id.hex(), operator=f"{host}:{port}")
        return self._start(chain)
