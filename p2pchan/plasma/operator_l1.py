"""The operator's layer-1 side: its child chain created or resumed, events followed, roots
submitted in order.

`create_or_resume` runs before anything is served. On first start it writes the plasma id it is
about to create (derived from its account's next nonce) to `plasma.bin`, then sends
`plasma_create` and waits for it; after a crash in between, the next start finds the chain on
layer 1, or creates it again. `OperatorChain.follow` feeds the chain's deposits and commitments
to the operator machine from the chain's creation on (so a restart re-learns every deposit)
and reports itself started once caught up; `wait_followed(h)` returns once block h's events are
applied (a deposit included there is then known). `submit_roots` commits built blocks strictly in
order, one at a time, each only after it is on disk; after any failure it asks layer 1 which
blocks it holds before sending again, so a root is never committed twice or skipped.
"""

from __future__ import annotations

import random
from collections import deque

import structlog
import trio

from p2pchan.crypto.keys import Identity
from p2pchan.errors import ChainError, PlasmaError, RemoteProtocolError, StoreError
from p2pchan.l1.client import L1Client, subscribe
from p2pchan.l1.events import PlasmaBlockSubmitted, PlasmaDeposited
from p2pchan.l1.plasma_contract import plasma_id_for
from p2pchan.l1.plasma_state import PlasmaChainInfo
from p2pchan.l1.transactions import PlasmaSubmitBlock
from p2pchan.l1.wallet import Wallet
from p2pchan.net.l1_link import L1Link
from p2pchan.plasma.operator import OperatorMachine
from p2pchan.plasma.operator_store import OperatorStore, PlasmaMeta
from p2pchan.types import ChainId, PlasmaId

log = structlog.get_logger(__name__)

RETRY_INITIAL = 0.25
RETRY_MAX = 5.0
COMMIT_TIMEOUT = 60.0  # after an included submit, how long the event may take to arrive


async def create_or_resume(
    store: OperatorStore,
    client: L1Client,
    identity: Identity,
    chain_id: ChainId,
    *,
    exit_bond: int,
    challenge_period: int,
) -> PlasmaChainInfo:
    """The operator's child chain on layer 1, created on first start."""
    meta = store.read_meta()
    if meta is not None and meta.chain_id != chain_id:
        raise StoreError(
            f"{store.datadir} runs a child chain of layer 1 {meta.chain_id.hex()[:16]}…, "
            f"not of {chain_id.hex()[:16]}…; use a new --datadir"
        )
    if meta is not None:
        info = await client.plasma_chain(meta.plasma_id)
        if info is not None:
            if not meta.created:
                store.write_meta(PlasmaMeta(1, chain_id, meta.plasma_id, meta.create_nonce, True))
            return info
        if meta.created:
            raise StoreError(f"layer 1 has no child chain {meta.plasma_id.hex()} any more")
        log.warning("plasma_create_lost", plasma_id=meta.plasma_id.hex())
    status = await client.status()
    wallet = Wallet(client, identity, chain_id, fee=status.min_fee)
    nonce = (await client.account(identity.node_id)).pending_nonce
    plasma_id = plasma_id_for(chain_id, identity.node_id, nonce)
    store.write_meta(PlasmaMeta(1, chain_id, plasma_id, nonce, False))  # before it is sent
    created_id, _ = await wallet.create_plasma(exit_bond, challenge_period, wait=True)
    if created_id != plasma_id:
        raise StoreError("the operator's account was used by someone else while creating")
    info = await client.plasma_chain(plasma_id)
    if info is None:
        raise StoreError(f"layer 1 included plasma_create but has no chain {plasma_id.hex()}")
    store.write_meta(PlasmaMeta(1, chain_id, plasma_id, nonce, True))
    log.info("plasma_created", plasma_id=plasma_id.hex(), challenge_period=challenge_period)
    return info


class OperatorChain:
    def __init__(
        self,
        machine: OperatorMachine,
        link: L1Link,
        wallet: Wallet,
        info: PlasmaChainInfo,
        *,
        l1_host: str,
        l1_port: int,
    ) -> None:
        self.machine = machine
        self.link = link
        self.wallet = wallet
        self.plasma_id: PlasmaId = info.plasma_id
        self.created_block = info.created_block
        self.l1_host = l1_host
        self.l1_port = l1_port
        self.height = info.created_block - 1  # the last layer-1 block whose events we have
        self._queue: deque[tuple[int, bytes]] = deque()  # built, on disk, not yet committed
        self._queued = trio.Event()
        self._committed: dict[int, trio.Event] = {}
        self._followed = trio.Event()  # set (and replaced) each time `height` moves on

    # -- commitments ------------------------------------------------------------------------

    def is_committed(self, blknum: int) -> bool:
        return blknum in self.machine.committed

    async def wait_committed(self, blknum: int) -> None:
        if self.is_committed(blknum):
            return
        await self._committed.setdefault(blknum, trio.Event()).wait()

    def enqueue(self, blknum: int, root: bytes) -> None:
        """A block is on disk: commit its root (after every block before it)."""
        self._queue.append((blknum, root))
        self._queued.set()

    # -- following layer 1 ------------------------------------------------------------------

    async def follow(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        head = (await self.link.status()).height
        started = False
        if self.height >= head:
            task_status.started(self.height)
            started = True
        backoff = RETRY_INITIAL
        while True:
            try:
                async with subscribe(self.l1_host, self.l1_port, self.height + 1) as notices:
                    backoff = RETRY_INITIAL
                    async for notice in notices:
                        height = notice.header.height
                        if height <= self.height:
                            continue
                        for event in notice.events:
                            self._apply(event)
                        self.height = height
                        self._followed.set()
                        self._followed = trio.Event()
                        if not started and height >= head:
                            log.info("plasma_caught_up", height=height)
                            task_status.started(height)
                            started = True
            except (ChainError, RemoteProtocolError) as error:
                log.warning("plasma_l1_subscription_lost", reason=str(error))
            await trio.sleep(backoff * random.uniform(0.5, 1.0))
            backoff = min(backoff * 2, RETRY_MAX)

    async def wait_followed(self, height: int) -> None:
        """Wait until the events of layer-1 block `height` are applied (under the caller's
        deadline)."""
        while self.height < height:
            await self._followed.wait()

    def _apply(self, event: object) -> None:
        if isinstance(event, PlasmaDeposited) and event.plasma_id == self.plasma_id:
            self.machine.on_deposit(event.blknum, event.owner, event.amount)
        elif isinstance(event, PlasmaBlockSubmitted) and event.plasma_id == self.plasma_id:
            try:
                self.machine.on_committed(event.blknum, event.root)
            except PlasmaError as error:
                # Only this operator submits roots: one it never built means its store is not
                # the one that ran this chain. Nothing it serves could be trusted: stop.
                raise StoreError(f"layer 1 disagrees with the store: {error}") from None
            log.info("plasma_block_committed", blknum=event.blknum, height=event.height)
            waiter = self._committed.pop(event.blknum, None)
            if waiter is not None:
                waiter.set()

    # -- submitting roots -------------------------------------------------------------------

    async def submit_roots(self) -> None:
        backoff = RETRY_INITIAL
        while True:
            while not self._queue:
                self._queued = trio.Event()
                await self._queued.wait()
            blknum, root = self._queue[0]
            try:
                await self._commit(blknum, root)
            except ChainError as error:
                log.warning("plasma_submit_failed", blknum=blknum, reason=str(error))
                await trio.sleep(backoff * random.uniform(0.5, 1.0))
                backoff = min(backoff * 2, RETRY_MAX)
                continue
            self._queue.popleft()
            backoff = RETRY_INITIAL

    async def _commit(self, blknum: int, root: bytes) -> None:
        """Make layer 1 hold `root` as block `blknum`, unless it does already."""
        if self.is_committed(blknum):
            return
        info = await self.link.plasma_chain(self.plasma_id)
        if info is None:
            raise StoreError(f"layer 1 has no child chain {self.plasma_id.hex()}")
        if info.current_block < blknum:
            if info.current_block + 1000 != blknum:
                raise StoreError(
                    f"block {blknum} is next in the store, but layer 1 is at {info.current_block}"
                )
            await self.wallet.send(PlasmaSubmitBlock(self.plasma_id, root), wait=True)
        with trio.move_on_after(COMMIT_TIMEOUT):
            await self.wait_committed(blknum)
            return
        raise ChainError("unavailable", f"block {blknum}'s commitment never arrived; retrying")
