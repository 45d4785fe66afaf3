"""The shell of one joined child chain: its watcher machine fed from layer 1 and the operator,
its records stored, its duties carried out, and the user's payments, deposits and exits.

One trio task per chain (`run`), beside the channel side and independent of it: it follows
layer 1 through its own subscription, from the chain's creation on every start, because the
machine lives in memory and is rebuilt by replaying the chain's history (the node's chain
watcher resumes after its last processed block, far later), and because a slow or silent
operator must never delay the channels' reaction to a close. For each layer-1 block it hands
the machine the chain's events, fetches every block the machine asks for (from the node's own
store when it checked it before, else from the operator, bounded by `fetch_timeout`), and only
then ticks: a block not served by the time its `withhold_timeout` runs out makes the chain bad.

Every step is: take the chain's lock, hand the machine its inputs, store the step's records
(`Persist*` and the bad verdict) in one transaction, release, carry out the rest. So a
confirmation is stored before it is handed to the operator, a sent transaction before the
operator sees it, an exit request before it is submitted. Until the replay has reached the
layer-1 head seen at start (`caught_up`) nothing leaves the node: no layer-1 call, no
confirmation, no payment; the machine's duties are asked for again on every block, so nothing
is lost by waiting. Layer-1 calls go through the node's `ChainActions` (one per duty at a time;
finalizing at most once under way per chain, since every watcher with a due exit finalizes and
a duplicate costs a fee).
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

import structlog
import trio

from p2pchan.crypto.keys import Identity
from p2pchan.errors import ChainError, PlasmaError, RemoteProtocolError, StoreError
from p2pchan.l1.client import subscribe
from p2pchan.l1.events import Event
from p2pchan.l1.transactions import PlasmaFinalizeExits
from p2pchan.l1.wallet import Wallet
from p2pchan.net.chain_actions import ChainActions
from p2pchan.net.l1_link import L1Link
from p2pchan.net.operator_link import OperatorLink
from p2pchan.plasma.api import TxResult
from p2pchan.plasma.block import PlasmaBlock
from p2pchan.plasma.client import OperatorUnavailable
from p2pchan.plasma.watcher import (
    ActionExit,
    ActionSendRefused,
    ContractReceive,
    ContractSendChallengeExit,
    ContractSendFinalizeExits,
    ContractSendStartExit,
    FetchBlock,
    FetchConfirmations,
    NotifyChainBad,
    PersistBlock,
    ReceiveBlock,
    ReceiveConfirmation,
    RestoreWallet,
    SendConfirmation,
    Tick,
    WatcherConfig,
    WatcherInput,
    WatcherMachine,
    WatcherOutput,
)
from p2pchan.storage.db import NodeDatabase
from p2pchan.storage.plasma import (
    JoinedChain,
    forget_exit_requests,
    forget_sent,
    load_wallet,
    mark_delivered,
    read_block,
    record_sent,
    request_exits,
    save_chain,
    write_watcher_outputs,
)
from p2pchan.types import Address
from p2pchan.wire.peer_messages import PeerMessage
from p2pchan.wire.plasma import Confirmation, SignedPlasmaTx, decode_signed_tx, utxo_pos
from p2pchan.wire.plasma_messages import (
    PlasmaConfirmations,
    PlasmaConfirmationsRequest,
    PlasmaMessage,
)

log = structlog.get_logger(__name__)

RETRY_INITIAL = 0.25
RETRY_MAX = 5.0
# How long a block fetch may take before the block counts as not served at this layer-1 block
# (asked again at the next): short while following the head, so a silent operator cannot
# hold the watcher back; longer while catching up after a start, when the connection is new.
FETCH_TIMEOUT = 2.0
CATCH_UP_FETCH_TIMEOUT = 10.0
REDELIVER_SECONDS = 1.0
# Refusals of a confirmation that may pass later: the operator has not seen the block's
# commitment yet, or lost the transaction and will relearn it from its store.
_RETRYABLE_CONFIRM = frozenset({"not_committed", "unknown_tx", "unavailable"})
# Refusals of a transaction that say nothing about it: hand it over again later.
_RETRYABLE_SUBMIT = frozenset({"block_full", "unavailable"})


# Hand a message to a connected peer; False when not connected (the node's peer layer).
SendToPeer = Callable[[Address, PeerMessage], Awaitable[bool]]


async def _no_peers(node_id: Address, message: PeerMessage) -> bool:
    return False


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class PlasmaWatch:
    def __init__(
        self,
        chain: JoinedChain,
        identity: Identity,
        database: NodeDatabase,
        actions: ChainActions,
        wallet: Wallet,
        link: L1Link,
        *,
        dev: bool = False,
        fetch_timeout: float = FETCH_TIMEOUT,
        send_to_peer: SendToPeer = _no_peers,
    ) -> None:
        self.chain = chain
        self.plasma_id = chain.plasma_id
        self.identity = identity
        self.database = database
        self.actions = actions
        self.wallet = wallet
        self.link = link
        self.dev = dev
        self.fetch_timeout = fetch_timeout
        self.send_to_peer = send_to_peer
        config = WatcherConfig(
            chain.plasma_id, chain.operator, chain.challenge_period, chain.withhold_timeout
        )
        self.machine = WatcherMachine(config, identity)
        self.operator = OperatorLink(chain.host, chain.port, timeout=fetch_timeout)
        self.processed = chain.created_block - 1  # replayed from the chain's creation
        self.caught_up = trio.Event()
        self._changed = trio.Event()
        self._lock = trio.Lock()
        self._stored_blocks: set[int] = set()
        self._undelivered: dict[tuple[bytes, Address], Confirmation] = {}
        self._delivered: set[tuple[bytes, Address]] = set()  # the operator holds them
        self._deliver = trio.Event()
        self._unsubmitted: dict[bytes, SignedPlasmaTx] = {}
        self._admitted: dict[bytes, int] = {}  # tx hash: the block the operator put it in
        self._resubmitting = False
        self._asking: set[bytes] = set()
        self._claimed_deposits: set[int] = set()
        self._cheats: set[int] = set()  # dev: our own exits of spent outputs, left unchallenged
        self._exit_requests: tuple[int, ...] = ()
        self._nursery: trio.Nursery | None = None

    # -- running ----------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Restore, then follow layer 1 forever; `started` at once (see `caught_up`)."""
        with structlog.contextvars.bound_contextvars(plasma=self.plasma_id.hex()):
            stored = await self.database.run(lambda c: load_wallet(c, self.plasma_id))
            bad = (
                None
                if self.chain.bad_block is None
                else NotifyChainBad(self.chain.bad_block, self.chain.bad_reason)
            )
            self.machine.handle(RestoreWallet(stored.sent, stored.confirmations, bad))
            self._stored_blocks = set(stored.stored_blocks)
            self._undelivered = {(h, c.owner): c for h, c in stored.undelivered}
            self._delivered = {(h, c.owner) for h, c in stored.confirmations} - set(
                self._undelivered
            )
            self._unsubmitted = {signed.tx_hash: signed for signed in stored.sent}
            self._exit_requests = stored.exit_requests
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self.operator.run)
                task_status.started()
                await self._follow_layer1()

    async def _head(self) -> int:
        while True:
            try:
                return (await self.link.status()).height
            except ChainError as error:
                log.warning("plasma_l1_unreachable", reason=str(error))
                await trio.sleep(RETRY_MAX)

    async def _follow_layer1(self) -> None:
        head = await self._head()
        if self.processed >= head:
            await self._caught_up()
        backoff = RETRY_INITIAL
        while True:
            try:
                async with subscribe(self.link.host, self.link.port, self.processed + 1) as blocks:
                    backoff = RETRY_INITIAL
                    async for notice in blocks:
                        height = notice.header.height
                        if height <= self.processed:
                            continue
                        await self._on_layer1_block(height, notice.events)
                        self.processed = height
                        self._changed_now()
                        if not self.caught_up.is_set() and height >= head:
                            await self._caught_up()
            except (ChainError, RemoteProtocolError) as error:
                log.warning("plasma_l1_subscription_lost", reason=str(error))
            await trio.sleep(backoff * random.uniform(0.5, 1.0))
            backoff = min(backoff * 2, RETRY_MAX)

    async def _on_layer1_block(self, height: int, events: Sequence[Event]) -> None:
        ours = [
            ContractReceive(event)
            for event in events
            if getattr(event, "plasma_id", None) == self.plasma_id
        ]
        if ours:
            await self._fetch_blocks(await self._step(ours))
        await self._fetch_blocks(await self._step([Tick(height)]))

    async def _caught_up(self) -> None:
        """The replay reached the head seen at start: from now on the node acts."""
        log.info(
            "plasma_caught_up",
            height=self.processed,
            checked_through=self.machine.chain.checked_through,
            chain_ok=self.machine.bad is None,
        )
        self.caught_up.set()
        assert self._nursery is not None
        self._nursery.start_soon(self._deliver_confirmations)
        requests, self._exit_requests = self._exit_requests, ()
        gone = []
        for position in requests:
            if position in self.machine.exits.exits or position not in self.machine.owned:
                gone.append(position)
                continue
            await self._step([ActionExit((position,))])
        if gone:
            await self.database.run(forget_exit_requests(self.plasma_id, gone))
        await self._step([Tick(self.processed)])  # the duties the replay held back

    # -- one step ---------------------------------------------------------------------------

    async def _step(self, inputs: Sequence[WatcherInput]) -> list[WatcherOutput]:
        """Hand `inputs` to the machine, store what they changed, then carry out the rest."""
        async with self._lock:
            outputs: list[WatcherOutput] = []
            for event in inputs:
                outputs.extend(self.machine.handle(event))
            await self._persist(outputs)
        self._carry_out(outputs)
        self._changed_now()
        return outputs

    async def _persist(self, outputs: list[WatcherOutput]) -> None:
        fresh = [
            output
            for output in outputs
            if not (isinstance(output, PersistBlock) and output.block.blknum in self._stored_blocks)
        ]
        records = write_watcher_outputs(self.plasma_id, fresh)
        bad = next((o for o in outputs if isinstance(o, NotifyChainBad)), None)
        verdict = None
        if bad is not None and self.chain.bad_block is None:
            self.chain = replace(self.chain, bad_block=bad.blknum, bad_reason=bad.reason)
            verdict = save_chain(self.chain)
        if records is None and verdict is None:
            return

        def work(connection: sqlite3.Connection) -> None:
            for piece in (records, verdict):
                if piece is not None:
                    piece(connection)

        await self.database.run(work)
        self._stored_blocks.update(
            output.block.blknum for output in fresh if isinstance(output, PersistBlock)
        )

    def _carry_out(self, outputs: list[WatcherOutput]) -> None:
        acting = self.caught_up.is_set()
        pid = self.plasma_id.hex()
        for output in outputs:
            if isinstance(output, SendConfirmation):
                key = (output.tx_hash, output.confirmation.owner)
                if key in self._delivered:
                    continue  # signed again by the replay after a restart: delivered before
                self._undelivered[key] = output.confirmation
                self._deliver.set()
                if acting and self._nursery is not None:
                    self._nursery.start_soon(self._push_confirmation, output.tx_hash)
            elif isinstance(output, NotifyChainBad):
                log.warning("plasma_chain_bad", blknum=output.blknum, reason=output.reason)
            elif not acting:
                continue  # before catching up: asked for again on a later block
            elif isinstance(output, ContractSendStartExit):
                self.actions.request_call(f"plasma_exit:{pid}:{output.call.utxo_pos}", output.call)
            elif isinstance(output, ContractSendChallengeExit):
                if output.call.utxo_pos not in self._cheats:
                    duty = f"plasma_challenge:{pid}:{output.call.utxo_pos}"
                    self.actions.request_call(duty, output.call)
            elif isinstance(output, ContractSendFinalizeExits):
                call = PlasmaFinalizeExits(output.plasma_id, output.max_count)
                self.actions.request_call(f"plasma_finalize:{pid}", call)
            elif isinstance(output, FetchConfirmations):
                self._ask_confirmations(output.tx_hash)
        if acting:
            self._note_lost_admissions()
        if acting and self._unsubmitted and not self._resubmitting and self.machine.bad is None:
            self._resubmitting = True
            assert self._nursery is not None
            self._nursery.start_soon(self._resubmit)

    def _note_lost_admissions(self) -> None:
        """A transaction the operator admitted into a block we have checked without finding it
        there was lost (an operator crash before the block was durable): hand it over again."""
        checked = self.machine.chain.checked_through
        for tx_hash, blknum in list(self._admitted.items()):
            sent = self.machine.sent.get(tx_hash)
            if sent is None or sent.confirmed_in is not None:
                del self._admitted[tx_hash]
            elif checked >= blknum:
                del self._admitted[tx_hash]
                self._unsubmitted[tx_hash] = sent.signed
                log.info("plasma_tx_lost_by_operator", tx_hash=tx_hash.hex(), blknum=blknum)

    def _changed_now(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Until `predicate()` holds after some step (under the caller's deadline)."""
        while not predicate():
            await self._changed.wait()

    # -- the operator -----------------------------------------------------------------------

    async def _fetch_blocks(self, outputs: list[WatcherOutput]) -> None:
        wanted = sorted({output.blknum for output in outputs if isinstance(output, FetchBlock)})
        for blknum in wanted:
            if self.machine.bad is not None:
                return
            block = await self._block(blknum)
            if block is not None:
                await self._step([ReceiveBlock(block)])

    async def _block(self, blknum: int) -> PlasmaBlock | None:
        """Block `blknum` from our store if we checked it before, else from the operator."""
        if blknum in self._stored_blocks:
            data = await self.database.run(lambda c: read_block(c, self.plasma_id, blknum))
            if data is not None:
                try:
                    return PlasmaBlock.decode(data)
                except RemoteProtocolError as error:
                    raise StoreError(f"corrupt plasma block {blknum}: {error}") from None
        timeout = self.fetch_timeout if self.caught_up.is_set() else CATCH_UP_FETCH_TIMEOUT
        try:
            return await self.operator.call(lambda client: client.block(blknum), seconds=timeout)
        except PlasmaError as error:  # not served (yet), or the operator is away
            log.info("plasma_block_not_served", blknum=blknum, code=error.code)
            return None

    def _ask_confirmations(self, tx_hash: bytes) -> None:
        if tx_hash in self._asking or self._nursery is None:
            return
        self._asking.add(tx_hash)
        self._nursery.start_soon(self._fetch_confirmations, tx_hash)

    async def _fetch_confirmations(self, tx_hash: bytes) -> None:
        """From the operator, and from the input owners we are connected to for whatever the
        operator does not hand over (it may withhold a confirmation it was given)."""
        try:
            try:
                result = await self.operator.call(lambda client: client.confirmations(tx_hash))
                if result.confirmations:
                    received = [ReceiveConfirmation(tx_hash, c) for c in result.confirmations]
                    await self._step(received)
            except PlasmaError as error:
                log.debug("plasma_confirmations_not_served", code=error.code)
            known = self.machine.chain.txs.get(tx_hash)
            held = self.machine.confirmations.get(tx_hash, {})
            if known is not None:
                request = PlasmaConfirmationsRequest(self.plasma_id, tx_hash)
                for owner in set(known.input_owners) - set(held) - {self.identity.node_id}:
                    await self.send_to_peer(owner, request)
        finally:
            self._asking.discard(tx_hash)

    async def _push_confirmation(self, tx_hash: bytes) -> None:
        """Hand our confirmation straight to the receivers we are connected to."""
        known = self.machine.chain.txs.get(tx_hash)
        held = self.machine.confirmations.get(tx_hash, {})
        if known is None or not held:
            return
        message = PlasmaConfirmations(
            self.plasma_id, tx_hash, tuple(Confirmation(o, s) for o, s in held.items())
        )
        try:
            receivers = {output.owner for output in decode_signed_tx(known.signed).tx.outputs}
        except RemoteProtocolError:
            return  # never so for a transaction of a valid block
        for receiver in receivers - {self.identity.node_id}:
            await self.send_to_peer(receiver, message)

    async def on_peer_message(self, peer: Address, message: PlasmaMessage) -> None:
        """A peer handed over confirmations (checked by the machine against layer 1's root
        before they count) or asks for those we hold."""
        if not self.caught_up.is_set():
            return
        if isinstance(message, PlasmaConfirmations):
            received = [ReceiveConfirmation(message.tx_hash, c) for c in message.confirmations]
            await self._step(received)
        elif isinstance(message, PlasmaConfirmationsRequest):
            held = self.machine.confirmations.get(message.tx_hash, {})
            if held:
                answer = tuple(Confirmation(owner, sig) for owner, sig in held.items())
                reply = PlasmaConfirmations(self.plasma_id, message.tx_hash, answer)
                await self.send_to_peer(peer, reply)

    async def _deliver_confirmations(self) -> None:
        """Hand our stored confirmations to the operator, for the receivers, until it holds
        each (retried while it is away or has not seen the block's commitment yet)."""
        while True:
            await self._deliver.wait()
            self._deliver = trio.Event()
            for (tx_hash, owner), confirmation in list(self._undelivered.items()):
                try:
                    await self._confirm(tx_hash, confirmation)
                except PlasmaError as error:
                    if error.code in _RETRYABLE_CONFIRM:
                        self._deliver.set()
                        continue
                    log.warning(
                        "plasma_confirmation_refused", code=error.code, reason=error.message
                    )
                    del self._undelivered[(tx_hash, owner)]
                    continue
                await self.database.run(mark_delivered(self.plasma_id, tx_hash, owner))
                self._undelivered.pop((tx_hash, owner), None)
                self._delivered.add((tx_hash, owner))
                log.info("plasma_confirmation_delivered", tx_hash=tx_hash.hex())
            if self._deliver.is_set():
                await trio.sleep(REDELIVER_SECONDS)

    async def _confirm(self, tx_hash: bytes, confirmation: Confirmation) -> None:
        await self.operator.call(lambda client: client.confirm(tx_hash, confirmation))

    async def move_operator(self, host: str, port: int) -> None:
        """The operator now listens at HOST:PORT (stored; the link reconnects there)."""
        async with self._lock:
            self.chain = replace(self.chain, host=host, port=port)
            await self.database.run(save_chain(self.chain))
        self.operator.host, self.operator.port = host, port
        log.info("plasma_operator_moved", address=f"{host}:{port}")

    # -- the user's actions -----------------------------------------------------------------

    def usable(self) -> None:
        """Raise `PlasmaError` unless the chain may be used now: caught up, and good."""
        if not self.caught_up.is_set():
            raise PlasmaError("catching_up", "the watcher is still catching up with layer 1")
        if self.machine.bad is not None:
            raise PlasmaError(
                "chain_bad",
                f"the chain is bad since block {self.machine.bad.blknum} "
                f"({self.machine.bad.reason}): it is not used any more",
            )

    async def pay(self, to: Address, amount: int) -> SignedPlasmaTx:
        """Sign a payment from the spendable outputs and store it, before the operator sees it."""
        self.usable()
        async with self._lock:
            signed = self.machine.pay(to, amount)
            try:
                await self.database.run(record_sent(self.plasma_id, signed, _now_ms()))
            except BaseException:
                self.machine.handle(ActionSendRefused(signed.tx_hash))
                raise
        self._changed_now()
        return signed

    async def submit(self, signed: SignedPlasmaTx) -> TxResult | None:
        """Hand a stored transaction to the operator: its admission, or None if the operator
        cannot take it now (it is handed over again later). A refusal frees its inputs and
        raises the operator's `PlasmaError`."""
        try:
            result = await self.operator.call(lambda client: client.submit(signed))
        except PlasmaError as error:
            if error.code == "duplicate_tx":
                self._unsubmitted.pop(signed.tx_hash, None)
                return None
            if error.code in _RETRYABLE_SUBMIT or isinstance(error, OperatorUnavailable):
                self._unsubmitted[signed.tx_hash] = signed
                return None
            await self._refused(signed.tx_hash)
            raise
        self._unsubmitted.pop(signed.tx_hash, None)
        self._admitted[signed.tx_hash] = result.blknum
        log.info("plasma_tx_submitted", tx_hash=signed.tx_hash.hex(), blknum=result.blknum)
        return result

    async def _refused(self, tx_hash: bytes) -> None:
        self._unsubmitted.pop(tx_hash, None)
        async with self._lock:
            self.machine.handle(ActionSendRefused(tx_hash))
            await self.database.run(forget_sent(self.plasma_id, tx_hash))
        self._changed_now()

    async def _resubmit(self) -> None:
        """Hand over again what the operator may not hold: sent before a restart or while it
        was away, and not found in a valid block yet."""
        try:
            for tx_hash, signed in list(self._unsubmitted.items()):
                sent = self.machine.sent.get(tx_hash)
                if sent is None or sent.confirmed_in is not None:
                    self._unsubmitted.pop(tx_hash, None)
                    continue
                try:
                    await self.submit(signed)
                except PlasmaError as error:
                    log.info("plasma_tx_refused", tx_hash=tx_hash.hex(), code=error.code)
        finally:
            self._resubmitting = False

    def sent_status(self, tx_hash: bytes) -> str:
        """`confirmed` (found in a valid block and confirmed by us), `refused`, `submitted`."""
        sent = self.machine.sent.get(tx_hash)
        if sent is None:
            return "refused"
        if sent.confirmed_in is not None:
            return "confirmed"
        return "pending" if tx_hash in self._unsubmitted else "submitted"

    async def deposit(self, amount: int) -> int:
        """Deposit on layer 1 and return the new output's position once the watcher saw it."""
        self.usable()
        result = await self.wallet.plasma_deposit(self.plasma_id, amount, wait=True)
        await self.wait_until(lambda: self.processed >= result.block)
        for blknum, output in sorted(self.machine.chain.deposits.items()):
            position = utxo_pos(blknum, 0, 0)
            if (
                output.owner == self.identity.node_id
                and output.amount == amount
                and self.machine.chain.commits[blknum][1] == result.block
                and position not in self._claimed_deposits
            ):
                self._claimed_deposits.add(position)
                return position
        raise PlasmaError("deposit_not_found", f"no deposit of {amount} in block {result.block}")

    async def request_exits(self, positions: Sequence[int]) -> None:
        """Exit these outputs of ours; the request is stored before any exit is submitted."""
        if not self.caught_up.is_set():
            raise PlasmaError("catching_up", "the watcher is still catching up with layer 1")
        async with self._lock:
            outputs = self.machine.handle(ActionExit(tuple(positions)))
            await self.database.run(request_exits(self.plasma_id, positions))
        self._carry_out(outputs)
        self._changed_now()

    async def exit_spent(self, position: int) -> None:
        """Dev nodes only: start the exit of an output of ours already spent — the attack the
        other watchers must challenge. Our own watcher leaves it alone."""
        if not self.dev:
            raise PlasmaError("not_dev", "--cheat needs a node started with --dev")
        call = self.machine.exit_call(position)
        if call is None:
            raise PlasmaError("no_exit", f"no exit can be built for output {position}")
        self._cheats.add(position)
        await self.wallet.send(call, wait=True)
