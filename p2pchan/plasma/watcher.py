"""The watcher's pure machine: one user's view of one child chain, and its exit game.

`WatcherMachine.handle(input) -> outputs` is its one entry. Inputs: layer-1 events
(`ContractReceive`), a block or a confirmation the operator served (`ReceiveBlock`,
`ReceiveConfirmation`), the user's own transactions and exit requests (`ActionSend`,
`ActionExit`), `Tick(height)`, and once, first, what the node stored (`RestoreWallet`).
Outputs: what to fetch from the operator, confirmations to hand over, layer-1 calls
(`ContractSend*`), `NotifyChainBad`, and the records the node stores before it carries out
anything else (`Persist*`): every valid block (so a restart re-checks the chain without the
operator, who could refuse to serve an old block again), the user's outputs with their
transactions and proofs, and every confirmation it signed or accepted.

It checks every committed block in number order (deposits interleave with operator blocks):
the operator's signature, the root layer 1 recorded, and every transaction against the UTXO set
of the valid blocks before it. A block that fails, or one not served within `withhold_timeout`
layer-1 blocks of its commitment, makes the chain bad (DESIGN.md "The watcher"): the user's
outputs in the valid blocks before it are exited at once, with the inputs of its transactions
it never confirmed (they stay its own), and it sends nothing more. Whatever the chain's state,
it challenges every queued exit of an output it knows was spent in a valid block, given the
exiting owner's confirmation of that spend, and it finalizes the queue once one of the user's
exits is due (every exit ahead of it is due then too): watchers with nothing due leave it to
those who have, as each duplicate finalize costs a layer-1 fee.

A confirmation is signed only for a transaction of the user's found in a block this machine
validated: a sender that never saw its transaction's block never confirms it. The user's own
requests are refused with a `PlasmaError` (state untouched) when they cannot apply (`chain_bad`,
`not_spendable`, `not_owned`); `pay` builds and signs a payment from the spendable outputs and
records it as an `ActionSend` would. Layer-1 duties (exits, challenges, finalizing) are asked
for again on every `Tick` until layer 1 shows them done or they no longer apply, as every duty
of the node is.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from p2pchan.crypto.keys import Identity
from p2pchan.crypto.merkle import MerkleTree
from p2pchan.errors import PlasmaError, RemoteProtocolError
from p2pchan.l1.events import (
    Event,
    PlasmaBlockSubmitted,
    PlasmaDeposited,
    PlasmaExitChallenged,
    PlasmaExitsFinalized,
    PlasmaExitStarted,
)
from p2pchan.l1.plasma_state import MAX_FINALIZE_PER_CALL, ExitStatus
from p2pchan.l1.transactions import PlasmaChallengeExit, PlasmaStartExit
from p2pchan.plasma.block import PlasmaBlock, ValidTx, check_block, validate_transactions
from p2pchan.plasma.exits import ExitQueue, challenge_call, start_exit_call
from p2pchan.plasma.utxo import UtxoSet
from p2pchan.types import Address, PlasmaId
from p2pchan.wire.plasma import (
    Confirmation,
    PlasmaTransaction,
    SignedPlasmaTx,
    TxInput,
    TxOutput,
    confirmation_valid,
    decode_signed_tx,
    deposit_root,
    deposit_tx,
    is_deposit_block,
    sign_confirmation,
    sign_tx,
    split_utxo_pos,
    utxo_pos,
)

# -- inputs -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContractReceive:
    """A layer-1 event of this chain (others are ignored)."""

    event: Event


@dataclass(frozen=True, slots=True)
class ReceiveBlock:
    block: PlasmaBlock


@dataclass(frozen=True, slots=True)
class ReceiveConfirmation:
    tx_hash: bytes
    confirmation: Confirmation


@dataclass(frozen=True, slots=True)
class ActionSend:
    """The user signed and handed this transaction to the operator."""

    signed: SignedPlasmaTx


@dataclass(frozen=True, slots=True)
class ActionSendRefused:
    """The operator refused a transaction the user sent: its inputs are free again."""

    tx_hash: bytes


@dataclass(frozen=True, slots=True)
class ActionExit:
    """Exit these outputs of the user's (all it can when `positions` is None)."""

    positions: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True)
class Tick:
    height: int  # the highest layer-1 block whose events were all handed in


@dataclass(frozen=True, slots=True)
class RestoreWallet:
    """What the node stored of this chain, handed in before anything else after a restart: the
    transactions its user sent (their inputs stay in flight until found in a block or refused),
    the confirmations it holds, and the block at which it found the chain bad (which stays bad,
    whatever the operator serves now)."""

    sent: tuple[SignedPlasmaTx, ...] = ()
    confirmations: tuple[tuple[bytes, Confirmation], ...] = ()
    bad: NotifyChainBad | None = None


WatcherInput = (
    ContractReceive
    | ReceiveBlock
    | ReceiveConfirmation
    | ActionSend
    | ActionSendRefused
    | ActionExit
    | Tick
    | RestoreWallet
)

# -- outputs ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FetchBlock:
    blknum: int


@dataclass(frozen=True, slots=True)
class FetchConfirmations:
    tx_hash: bytes


@dataclass(frozen=True, slots=True)
class SendConfirmation:
    """Hand this confirmation to the operator, which relays it to the receivers."""

    tx_hash: bytes
    confirmation: Confirmation


@dataclass(frozen=True, slots=True)
class ContractSendStartExit:
    call: PlasmaStartExit


@dataclass(frozen=True, slots=True)
class ContractSendChallengeExit:
    call: PlasmaChallengeExit


@dataclass(frozen=True, slots=True)
class ContractSendFinalizeExits:
    plasma_id: PlasmaId
    max_count: int


@dataclass(frozen=True, slots=True)
class NotifyChainBad:
    blknum: int
    reason: str


@dataclass(frozen=True, slots=True)
class PersistBlock:
    """A block found valid."""

    block: PlasmaBlock


@dataclass(frozen=True, slots=True)
class PersistOutput:
    """An output of the user's, with what its exit needs: the transaction that made it and
    its Merkle proof (b"" for a deposit). Its confirmations are stored as they come."""

    utxo_pos: int
    amount: int
    signed: SignedPlasmaTx
    proof: bytes


@dataclass(frozen=True, slots=True)
class PersistConfirmation:
    """A confirmation the user signed (`ours`: stored before it is handed over) or received."""

    tx_hash: bytes
    confirmation: Confirmation
    ours: bool


WatcherOutput = (
    FetchBlock
    | FetchConfirmations
    | SendConfirmation
    | ContractSendStartExit
    | ContractSendChallengeExit
    | ContractSendFinalizeExits
    | NotifyChainBad
    | PersistBlock
    | PersistOutput
    | PersistConfirmation
)

# -- state --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WatcherConfig:
    plasma_id: PlasmaId
    operator: Address
    challenge_period: int
    withhold_timeout: int  # layer-1 blocks a committed block may stay unserved; < challenge_period


@dataclass(slots=True)
class KnownTx:
    """A transaction of a valid block: where it is and whose inputs it spent."""

    blknum: int
    txindex: int
    signed: SignedPlasmaTx
    input_owners: tuple[Address, ...]


@dataclass(slots=True)
class SentTx:
    signed: SignedPlasmaTx
    inputs: tuple[int, ...]
    confirmed_in: int | None = None  # the block we found it in and confirmed it


@dataclass(slots=True)
class ChainView:
    """What the watcher knows of the chain; all of it comes from layer 1 or checked blocks."""

    commits: dict[int, tuple[bytes, int]] = field(default_factory=dict)  # blknum: root, height
    unchecked: deque[int] = field(default_factory=deque)  # committed, in order, not yet checked
    bodies: dict[int, PlasmaBlock] = field(default_factory=dict)  # served, waiting their turn
    deposits: dict[int, TxOutput] = field(default_factory=dict)
    utxos: UtxoSet = field(default_factory=UtxoSet)
    blocks: dict[int, tuple[SignedPlasmaTx, ...]] = field(default_factory=dict)  # valid ones
    trees: dict[int, MerkleTree] = field(default_factory=dict)
    txs: dict[bytes, KnownTx] = field(default_factory=dict)  # every transaction of a valid block
    spends: dict[int, bytes] = field(default_factory=dict)  # position -> spending tx hash
    checked_through: int = 0  # every committed block up to here is checked (valid)


class WatcherMachine:
    def __init__(self, config: WatcherConfig, identity: Identity) -> None:
        if not 1 <= config.withhold_timeout < config.challenge_period:
            # Exits started withhold_timeout + 1 blocks after a withheld block's commitment
            # must still come before that block's outputs: max(h + 2cp, h + w + 1 + cp).
            raise PlasmaError(
                "bad_withhold_timeout",
                f"withhold_timeout must be 1 to {config.challenge_period - 1} blocks",
            )
        self.config = config
        self.identity = identity
        self.me = identity.node_id
        self.height = 0
        self.chain = ChainView()
        self.exits = ExitQueue()
        self.bad: NotifyChainBad | None = None
        self.known_bad: NotifyChainBad | None = None  # restored: bad there, whatever is served
        self.owned: set[int] = set()  # our outputs in valid blocks (deposits: any), unspent
        self.sent: dict[bytes, SentTx] = {}
        self.in_flight: set[int] = set()  # our outputs spent by a sent, unconfirmed transaction
        self.confirmations: dict[bytes, dict[Address, bytes]] = {}
        self.exit_duties: set[int] = set()
        self.asked_confirmations: set[bytes] = set()

    # -- the one entry ----------------------------------------------------------------------

    def handle(self, event: WatcherInput) -> list[WatcherOutput]:
        outputs: list[WatcherOutput] = []
        was_bad = self.bad is not None
        if isinstance(event, ContractReceive):
            self._on_contract(event.event, outputs)
        elif isinstance(event, ReceiveBlock):
            self._on_block(event.block, outputs)
        elif isinstance(event, ReceiveConfirmation):
            self._on_confirmation(event.tx_hash, event.confirmation, outputs)
        elif isinstance(event, ActionSend):
            self._on_send(event.signed)
        elif isinstance(event, ActionSendRefused):
            self._on_refused(event.tx_hash)
        elif isinstance(event, ActionExit):
            self._on_exit_request(event.positions)
        elif isinstance(event, RestoreWallet):
            self._restore(event)
        else:
            self.height = max(self.height, event.height)
            self.asked_confirmations.clear()  # asked again each block until they come
            self._check_withheld(outputs)
        self._advance(outputs)
        went_bad = self.bad is not None and not was_bad
        if went_bad or isinstance(event, Tick | ActionExit):
            self._duties(outputs)
        return outputs

    # -- layer 1 ----------------------------------------------------------------------------

    def _on_contract(self, event: Event, outputs: list[WatcherOutput]) -> None:
        if getattr(event, "plasma_id", None) != self.config.plasma_id:
            return
        chain = self.chain
        if isinstance(event, PlasmaBlockSubmitted | PlasmaDeposited):
            if event.blknum in chain.commits:
                return  # a replayed event
            if isinstance(event, PlasmaDeposited):
                output = TxOutput(event.owner, event.amount)
                root = deposit_root(self.config.plasma_id, event.owner, event.amount)
                chain.deposits[event.blknum] = output
                if event.owner == self.me:
                    position = utxo_pos(event.blknum, 0, 0)
                    self.owned.add(position)
                    deposit = deposit_tx(self.config.plasma_id, event.owner, event.amount)
                    outputs.append(PersistOutput(position, event.amount, deposit, b""))
            else:
                root = event.root
                outputs.append(FetchBlock(event.blknum))
            chain.commits[event.blknum] = (root, event.height)
            chain.unchecked.append(event.blknum)
        elif isinstance(event, PlasmaExitStarted):
            self.exits.started(event)
            self.exit_duties.discard(event.utxo_pos)
        elif isinstance(event, PlasmaExitChallenged):
            self.exits.challenged(event.utxo_pos)
        elif isinstance(event, PlasmaExitsFinalized):
            for paid in event.exits:
                self.exits.paid(paid.utxo_pos, paid.paid)

    def _check_withheld(self, outputs: list[WatcherOutput]) -> None:
        chain = self.chain
        if self.bad is not None or not chain.unchecked:
            return
        blknum = chain.unchecked[0]
        if is_deposit_block(blknum) or blknum in chain.bodies:
            return
        committed_at = chain.commits[blknum][1]
        if self.height >= committed_at + self.config.withhold_timeout:
            self._go_bad(blknum, "withheld: not served in time", outputs)
        else:
            outputs.append(FetchBlock(blknum))

    # -- blocks -----------------------------------------------------------------------------

    def _on_block(self, block: PlasmaBlock, outputs: list[WatcherOutput]) -> None:
        if block.plasma_id != self.config.plasma_id or block.blknum in self.chain.blocks:
            return
        if block.blknum in self.chain.commits:
            self.chain.bodies[block.blknum] = block

    def _advance(self, outputs: list[WatcherOutput]) -> None:
        """Check committed blocks in order for as long as their bodies are here."""
        chain = self.chain
        while chain.unchecked and self.bad is None:
            blknum = chain.unchecked[0]
            if self.known_bad is not None and blknum == self.known_bad.blknum:
                self._go_bad(blknum, self.known_bad.reason, outputs)
                return
            if is_deposit_block(blknum):
                chain.utxos.add(utxo_pos(blknum, 0, 0), chain.deposits[blknum])
            else:
                block = chain.bodies.pop(blknum, None)
                if block is None:
                    return
                try:
                    self._check(block, outputs)
                except PlasmaError as error:
                    self._go_bad(blknum, f"invalid: {error}", outputs)
                    return
            chain.unchecked.popleft()
            chain.checked_through = blknum

    def _check(self, block: PlasmaBlock, outputs: list[WatcherOutput]) -> None:
        chain, config = self.chain, self.config
        root, _ = chain.commits[block.blknum]
        tree = check_block(
            block,
            plasma_id=config.plasma_id,
            blknum=block.blknum,
            operator=config.operator,
            root=root,
        )
        valid = validate_transactions(chain.utxos, block)
        chain.blocks[block.blknum] = block.transactions
        chain.trees[block.blknum] = tree
        outputs.append(PersistBlock(block))
        for entry in valid:
            self._learn(block.blknum, entry, tree, outputs)

    def _learn(
        self, blknum: int, entry: ValidTx, tree: MerkleTree, outputs: list[WatcherOutput]
    ) -> None:
        decoded = entry.decoded
        tx_hash = decoded.tx_hash
        root = tree.root
        self.chain.txs[tx_hash] = KnownTx(blknum, entry.txindex, decoded.signed, entry.input_owners)
        for tx_input in decoded.tx.inputs:
            self.chain.spends[tx_input.pos] = tx_hash
        for oindex, output in enumerate(decoded.tx.outputs):
            if output.owner == self.me:
                position = utxo_pos(blknum, entry.txindex, oindex)
                self.owned.add(position)
                proof = tree.proof(entry.txindex)
                outputs.append(PersistOutput(position, output.amount, decoded.signed, proof))
        if self.me in entry.input_owners:
            # Our own transaction (our key signed it) in a block we checked: confirm it; its
            # inputs are the receivers' from now on.
            sent = self.sent.get(tx_hash)
            if sent is not None:
                sent.confirmed_in = blknum
            confirmation = sign_confirmation(self.identity, tx_hash, root)
            self.confirmations.setdefault(tx_hash, {})[self.me] = confirmation.signature
            outputs.append(PersistConfirmation(tx_hash, confirmation, ours=True))
            outputs.append(SendConfirmation(tx_hash, confirmation))
            for tx_input in decoded.tx.inputs:
                self.owned.discard(tx_input.pos)
                self.in_flight.discard(tx_input.pos)

    def _go_bad(self, blknum: int, reason: str, outputs: list[WatcherOutput]) -> None:
        if self.bad is not None:
            return
        if self.known_bad is not None and self.known_bad.blknum == blknum:
            reason = self.known_bad.reason  # as first found, before a restart
        self.bad = NotifyChainBad(blknum, reason)
        outputs.append(self.bad)
        # Every output of ours in the valid blocks, and the inputs of our unconfirmed
        # transactions (still in `owned`): all of them leave.
        self.exit_duties.update(self.owned)

    # -- confirmations and sends ------------------------------------------------------------

    def _on_confirmation(
        self, tx_hash: bytes, confirmation: Confirmation, outputs: list[WatcherOutput]
    ) -> None:
        known = self.chain.txs.get(tx_hash)
        if known is None or confirmation.owner not in known.input_owners:
            return
        have = self.confirmations.setdefault(tx_hash, {})
        if have.get(confirmation.owner) == confirmation.signature:
            return  # already held (and stored)
        root = self.chain.commits[known.blknum][0]
        if confirmation_valid(confirmation.owner, tx_hash, root, confirmation.signature):
            have[confirmation.owner] = confirmation.signature
            outputs.append(PersistConfirmation(tx_hash, confirmation, ours=False))

    def _restore(self, restored: RestoreWallet) -> None:
        for signed in restored.sent:
            try:
                decoded = decode_signed_tx(signed)
            except RemoteProtocolError:
                continue  # never stored so: the wallet signed it
            inputs = tuple(tx_input.pos for tx_input in decoded.tx.inputs)
            self.sent[decoded.tx_hash] = SentTx(signed, inputs)
            self.in_flight.update(inputs)
        for tx_hash, confirmation in restored.confirmations:
            self.confirmations.setdefault(tx_hash, {})[confirmation.owner] = confirmation.signature
        self.known_bad = restored.bad

    def _on_send(self, signed: SignedPlasmaTx) -> None:
        if self.bad is not None:
            raise PlasmaError("chain_bad", f"the chain is bad since block {self.bad.blknum}")
        try:
            decoded = decode_signed_tx(signed)
        except RemoteProtocolError as error:
            raise PlasmaError("malformed", str(error)) from None
        inputs = tuple(tx_input.pos for tx_input in decoded.tx.inputs)
        for position in inputs:
            if position not in self.owned or position in self.in_flight:
                raise PlasmaError("not_spendable", f"output {position} is not ours to spend")
            if self.is_exiting(position):
                raise PlasmaError("exiting", f"output {position} is leaving the chain")
        self.sent[decoded.tx_hash] = SentTx(signed, inputs)
        self.in_flight.update(inputs)

    def _on_refused(self, tx_hash: bytes) -> None:
        sent = self.sent.get(tx_hash)
        if sent is not None and sent.confirmed_in is None:
            del self.sent[tx_hash]
            self.in_flight.difference_update(sent.inputs)

    def _on_exit_request(self, positions: tuple[int, ...] | None) -> None:
        wanted = self.owned if positions is None else set(positions)
        for position in wanted:
            if position not in self.owned:
                raise PlasmaError("not_owned", f"output {position} is not ours")
        self.exit_duties.update(wanted)

    # -- what the user owns -----------------------------------------------------------------

    def _creating_tx(self, position: int) -> bytes:
        blknum, txindex, _ = split_utxo_pos(position)
        return self.chain.blocks[blknum][txindex].tx_hash

    def confirmed(self, position: int) -> bool:
        """Every input owner of the transaction that made this output has confirmed it (a
        deposit needs nobody): only then may it be spent or exited."""
        if is_deposit_block(split_utxo_pos(position)[0]):
            return True
        known = self.chain.txs[self._creating_tx(position)]
        have = self.confirmations.get(known.signed.tx_hash, {})
        return all(owner in have for owner in known.input_owners)

    def is_exiting(self, position: int) -> bool:
        """Asked to exit, or its exit is on layer 1: never spent again (a confirmed spend would
        let anyone challenge the exit and take its bond)."""
        return position in self.exit_duties or position in self.exits.exits

    def spendable(self) -> list[tuple[int, int]]:
        """(position, amount) of our confirmed, unspent outputs not in flight nor exiting."""
        if self.bad is not None:
            return []
        result = []
        for position in sorted(self.owned - self.in_flight):
            output = self._output(position)
            if output is not None and self.confirmed(position) and not self.is_exiting(position):
                result.append((position, output.amount))
        return result

    def output(self, position: int) -> TxOutput | None:
        """The output at `position` of a valid block or a deposit, spent or not."""
        return self._output(position)

    def _output(self, position: int) -> TxOutput | None:
        blknum, _, _ = split_utxo_pos(position)
        if is_deposit_block(blknum):
            return self.chain.deposits.get(blknum)
        return self.chain.utxos.ever(position)

    def pay(self, to: Address, amount: int) -> SignedPlasmaTx:
        """Sign a payment from our spendable outputs (at most two inputs, change back to us)."""
        if amount <= 0:
            raise PlasmaError("zero_amount", "pay something")
        candidates = sorted(self.spendable(), key=lambda item: (-item[1], item[0]))
        for count in (1, 2):
            chosen = _cover(candidates, amount, count)
            if chosen is not None:
                break
        else:
            raise PlasmaError("insufficient_funds", f"no two spendable outputs cover {amount}")
        total = sum(value for _, value in chosen)
        outputs = [TxOutput(to, amount)]
        if total > amount:
            outputs.append(TxOutput(self.me, total - amount))
        tx = PlasmaTransaction(
            self.config.plasma_id,
            tuple(TxInput(*split_utxo_pos(position)) for position, _ in chosen),
            tuple(outputs),
        )
        signed = sign_tx(tx, [self.identity] * len(chosen))
        self._on_send(signed)
        return signed

    # -- layer-1 duties ---------------------------------------------------------------------

    def _duties(self, outputs: list[WatcherOutput]) -> None:
        waiting = {
            self._creating_tx(position) for position in self.owned if not self.confirmed(position)
        }
        for tx_hash in sorted(waiting):  # received, not yet spendable: ask for confirmations
            outputs.append(FetchConfirmations(tx_hash))
        for position in sorted(self.exit_duties):
            call = self._exit_call(position, outputs)
            if call is not None:
                outputs.append(ContractSendStartExit(call))
        for view in self.exits.queued():
            challenge = self._challenge_call(view.utxo_pos, view.owner, outputs)
            if challenge is not None:
                outputs.append(ContractSendChallengeExit(challenge))
        if self.exits.due(self.height) and any(
            view.owner == self.me and view.exitable_at <= self.height
            for view in self.exits.queued()
        ):
            outputs.append(ContractSendFinalizeExits(self.config.plasma_id, MAX_FINALIZE_PER_CALL))

    def _exit_call(self, position: int, outputs: list[WatcherOutput]) -> PlasmaStartExit | None:
        if position in self.exits.exits:
            self.exit_duties.discard(position)  # started (by us, or refused for good)
            return None
        return self.exit_call(position, outputs)

    def exit_call(
        self, position: int, outputs: list[WatcherOutput] | None = None
    ) -> PlasmaStartExit | None:
        """The `plasma_start_exit` of an output of a valid block or a deposit, whoever owns it
        now, or None while a confirmation it needs is missing (asked for in `outputs`)."""
        blknum, txindex, _ = split_utxo_pos(position)
        plasma_id = self.config.plasma_id
        if is_deposit_block(blknum):
            output = self.chain.deposits.get(blknum)
            if output is None:
                return None
            deposit = deposit_tx(plasma_id, output.owner, output.amount)
            return start_exit_call(plasma_id, position, deposit, None, ())
        block = self.chain.blocks.get(blknum)
        if block is None or txindex >= len(block):
            return None
        signed = block[txindex]
        known = self.chain.txs[signed.tx_hash]
        have = self.confirmations.get(signed.tx_hash, {})
        if not all(owner in have for owner in known.input_owners):
            if outputs is not None:
                self._ask_confirmations(signed.tx_hash, outputs)
            return None
        confirmations = tuple(Confirmation(owner, have[owner]) for owner in known.input_owners)
        return start_exit_call(plasma_id, position, signed, self.chain.trees[blknum], confirmations)

    def _challenge_call(
        self, position: int, owner: Address, outputs: list[WatcherOutput]
    ) -> PlasmaChallengeExit | None:
        tx_hash = self.chain.spends.get(position)
        if tx_hash is None:
            return None
        known = self.chain.txs[tx_hash]
        confirmation = self.confirmations.get(tx_hash, {}).get(owner)
        if confirmation is None:
            self._ask_confirmations(tx_hash, outputs)
            return None
        return challenge_call(
            self.config.plasma_id,
            position,
            utxo_pos(known.blknum, known.txindex, 0),
            known.signed,
            self.chain.trees[known.blknum],
            confirmation,
        )

    def _ask_confirmations(self, tx_hash: bytes, outputs: list[WatcherOutput]) -> None:
        if tx_hash not in self.asked_confirmations:
            self.asked_confirmations.add(tx_hash)
            outputs.append(FetchConfirmations(tx_hash))

    def exit_status(self, position: int) -> ExitStatus | None:
        view = self.exits.exits.get(position)
        return None if view is None else view.status


def _cover(
    candidates: list[tuple[int, int]], amount: int, count: int
) -> list[tuple[int, int]] | None:
    """The first `count` outputs (largest first) that cover `amount`, or None."""
    if count == 1:
        return next(([item] for item in candidates if item[1] >= amount), None)
    if len(candidates) >= 2 and candidates[0][1] + candidates[1][1] >= amount:
        return candidates[:2]
    return None
