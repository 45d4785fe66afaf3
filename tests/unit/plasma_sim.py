"""A whole child chain in one process, without IO: layer 1, the operator machine, watchers.

`PlasmaSim` wires the pure pieces the way the operator process and the node's watcher will:
layer-1 calls queue for the next layer-1 block; each `step()` seals one block, hands its events
to the operator machine and to every watcher, then a `Tick`; the watchers' outputs are carried
out at once (blocks and confirmations fetched from the operator if it serves them,
confirmations handed to the operator and relayed to every watcher, layer-1 calls queued for the
next block, what a node would store kept in `persisted`). The operator is `--dev`, so tests can
switch on its attacks.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from p2pchan.crypto.keys import Identity
from p2pchan.errors import ChainError, PlasmaError
from p2pchan.l1.events import Event, PlasmaBlockSubmitted, PlasmaCreated, PlasmaDeposited
from p2pchan.l1.plasma_state import PlasmaChain
from p2pchan.l1.transactions import (
    Call,
    PlasmaCreate,
    PlasmaDeposit,
    PlasmaFinalizeExits,
    PlasmaSubmitBlock,
)
from p2pchan.plasma.block import PlasmaBlock
from p2pchan.plasma.operator import BuiltBlock, OperatorMachine
from p2pchan.plasma.watcher import (
    ActionSend,
    ActionSendRefused,
    ContractReceive,
    ContractSendChallengeExit,
    ContractSendFinalizeExits,
    ContractSendStartExit,
    FetchBlock,
    FetchConfirmations,
    NotifyChainBad,
    PersistBlock,
    PersistConfirmation,
    PersistOutput,
    ReceiveBlock,
    ReceiveConfirmation,
    SendConfirmation,
    Tick,
    WatcherConfig,
    WatcherInput,
    WatcherMachine,
    WatcherOutput,
)
from p2pchan.types import Address
from p2pchan.wire.plasma import SignedPlasmaTx
from tests.unit.chain_helpers import ChainHarness


@dataclass
class PlasmaSim:
    users: list[Identity]
    operator: Identity
    challenge_period: int = 20
    withhold_timeout: int = 5
    exit_bond: int = 10
    funds: int = 100_000
    harness: ChainHarness = field(init=False)
    height: int = field(init=False, default=1)
    machine: OperatorMachine = field(init=False)
    watchers: dict[Address, WatcherMachine] = field(init=False, default_factory=dict)
    blocks: dict[int, bytes] = field(init=False, default_factory=dict)  # the operator's store
    calls: list[tuple[Identity, Call]] = field(init=False, default_factory=list)
    refusals: list[tuple[str, str]] = field(init=False, default_factory=list)  # (call, code)
    bad: dict[Address, NotifyChainBad] = field(init=False, default_factory=dict)
    events: list[tuple[int, Event]] = field(init=False, default_factory=list)
    # What each watcher asked its node to store (`Persist*`), in order.
    persisted: dict[Address, list[WatcherOutput]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        everyone = [*self.users, self.operator]
        self.harness = ChainHarness.create([(who, self.funds) for who in everyone])
        [created] = self.harness.call(
            self.operator, PlasmaCreate(self.exit_bond, self.challenge_period), self.height
        )
        assert isinstance(created, PlasmaCreated)
        self.plasma_id = created.plasma_id
        self.machine = OperatorMachine(self.operator, self.plasma_id, dev=True)
        config = WatcherConfig(
            self.plasma_id, self.operator.node_id, self.challenge_period, self.withhold_timeout
        )
        for who in everyone:
            self.watchers[who.node_id] = WatcherMachine(config, who)

    @property
    def chain(self) -> PlasmaChain:
        return self.harness.state.plasma[self.plasma_id]

    def watcher(self, who: Identity) -> WatcherMachine:
        return self.watchers[who.node_id]

    # -- layer 1 ----------------------------------------------------------------------------

    def call(self, who: Identity, call: Call) -> None:
        """Queue a layer-1 call for the next block."""
        self.calls.append((who, call))

    def deposit(self, who: Identity, amount: int) -> None:
        self.call(who, PlasmaDeposit(self.plasma_id, amount))

    def step(self, blocks: int = 1) -> None:
        for _ in range(blocks):
            self._seal()

    def _seal(self) -> None:
        self.height += 1
        calls, self.calls = self.calls, []
        events: list[Event] = []
        for who, call in calls:
            try:
                events.extend(self.harness.call(who, call, self.height))
            except ChainError as error:
                self.refusals.append((type(call).__name__, error.code))
        self.events.extend((self.height, event) for event in events)
        for event in events:
            self._operator_sees(event)
        for address, watcher in self.watchers.items():
            for event in events:
                self._feed(address, watcher, ContractReceive(event))
            self._feed(address, watcher, Tick(self.height))

    def _operator_sees(self, event: Event) -> None:
        if isinstance(event, PlasmaDeposited) and event.plasma_id == self.plasma_id:
            self.machine.on_deposit(event.blknum, event.owner, event.amount)
        elif isinstance(event, PlasmaBlockSubmitted) and event.plasma_id == self.plasma_id:
            self.machine.on_committed(event.blknum, event.root)

    # -- the operator -----------------------------------------------------------------------

    def build(self) -> BuiltBlock:
        """Build a block and queue its root for the next layer-1 block."""
        built = self.machine.build_block()
        self.blocks[built.blknum] = built.data
        self.call(self.operator, PlasmaSubmitBlock(self.plasma_id, built.root))
        return built

    def send(self, signed: SignedPlasmaTx) -> bool:
        """Hand a signed transaction to the operator (the wallet recorded it already)."""
        try:
            self.machine.admit(signed)
        except PlasmaError:
            for watcher in self.watchers.values():
                if signed.tx_hash in watcher.sent:
                    watcher.handle(ActionSendRefused(signed.tx_hash))
            return False
        return True

    def pay(self, sender: Identity, to: Identity, amount: int) -> bool:
        """The sender's wallet signs a payment and sends it; False if it could not."""
        try:
            signed = self.watcher(sender).pay(to.node_id, amount)
        except PlasmaError:
            return False
        return self.send(signed)

    # -- carrying out watcher outputs -------------------------------------------------------

    def _feed(self, address: Address, watcher: WatcherMachine, first: WatcherInput) -> None:
        queue: deque[WatcherInput] = deque([first])
        who = next(p for p in [*self.users, self.operator] if p.node_id == address)
        while queue:
            for output in watcher.handle(queue.popleft()):
                if isinstance(output, FetchBlock):
                    if self.machine.is_served(output.blknum):
                        block = PlasmaBlock.decode(self.blocks[output.blknum])
                        queue.append(ReceiveBlock(block))
                elif isinstance(output, FetchConfirmations):
                    for confirmation in self.machine.confirmations_of(output.tx_hash):
                        queue.append(ReceiveConfirmation(output.tx_hash, confirmation))
                elif isinstance(output, SendConfirmation):
                    self._relay(output)
                elif isinstance(output, ContractSendStartExit | ContractSendChallengeExit):
                    self._queue_once(who, output.call)
                elif isinstance(output, ContractSendFinalizeExits):
                    self._queue_once(who, PlasmaFinalizeExits(output.plasma_id, output.max_count))
                elif isinstance(output, NotifyChainBad):
                    self.bad[address] = output
                elif isinstance(output, PersistBlock | PersistOutput | PersistConfirmation):
                    self.persisted.setdefault(address, []).append(output)

    def _queue_once(self, who: Identity, call: Call) -> None:
        if (who, call) not in self.calls:
            self.calls.append((who, call))

    def _relay(self, output: SendConfirmation) -> None:
        try:
            self.machine.add_confirmation(output.tx_hash, output.confirmation)
        except PlasmaError:
            return
        for address, watcher in self.watchers.items():
            self._feed(address, watcher, ReceiveConfirmation(output.tx_hash, output.confirmation))

    def action(self, who: Identity, action: WatcherInput) -> None:
        self._feed(who.node_id, self.watcher(who), action)

    def record_send(self, who: Identity, signed: SignedPlasmaTx) -> None:
        self.action(who, ActionSend(signed))
