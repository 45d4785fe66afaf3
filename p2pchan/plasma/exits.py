"""The exit game as a watcher sees it: the queue mirrored from layer-1 events, and the calls.

Layer 1 keeps the real queue (`p2pchan.l1.plasma_state`); a watcher rebuilds the same order
from `PlasmaExitStarted` / `Challenged` / `ExitsFinalized` events, so it can tell when the head
is due (and finalize), which queued exits it can challenge, and how much is owed ahead of one of
its own exits. The priority formula is layer 1's `exitable_at`, imported, never restated. The
call builders put a watcher's knowledge (a transaction, its block's tree, the confirmations it
holds) into the exact calls the contract checks.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from p2pchan.crypto.merkle import MerkleTree
from p2pchan.l1.events import PlasmaExitStarted
from p2pchan.l1.plasma_state import ExitStatus, exitable_at
from p2pchan.l1.transactions import PlasmaChallengeExit, PlasmaStartExit
from p2pchan.types import Address, PlasmaId
from p2pchan.wire.plasma import Confirmation, SignedPlasmaTx, is_deposit_block, split_utxo_pos

__all__ = ["ExitQueue", "ExitView", "challenge_call", "exitable_at", "start_exit_call"]


@dataclass(slots=True)
class ExitView:
    utxo_pos: int
    owner: Address
    amount: int
    exitable_at: int
    status: ExitStatus
    paid: int = 0

    @property
    def priority(self) -> tuple[int, int]:
        return (self.exitable_at, self.utxo_pos)


class ExitQueue:
    """One chain's exits as layer 1 reported them; queued ones kept in priority order."""

    __slots__ = ("_queue", "exits")

    def __init__(self) -> None:
        self.exits: dict[int, ExitView] = {}
        self._queue: list[tuple[int, int]] = []

    def started(self, event: PlasmaExitStarted) -> ExitView:
        view = ExitView(
            event.utxo_pos, event.owner, event.amount, event.exitable_at, ExitStatus.QUEUED
        )
        self.exits[event.utxo_pos] = view
        bisect.insort(self._queue, view.priority)
        return view

    def _leave(self, view: ExitView) -> None:
        index = bisect.bisect_left(self._queue, view.priority)
        if index < len(self._queue) and self._queue[index] == view.priority:
            del self._queue[index]

    def challenged(self, position: int) -> None:
        view = self.exits.get(position)
        if view is not None and view.status == ExitStatus.QUEUED:
            self._leave(view)
            view.status = ExitStatus.CHALLENGED

    def paid(self, position: int, amount: int) -> None:
        view = self.exits.get(position)
        if view is not None and view.status == ExitStatus.QUEUED:
            self._leave(view)
            view.status = ExitStatus.PAID
            view.paid = amount

    def queued(self) -> list[ExitView]:
        return [self.exits[position] for _, position in self._queue]

    def head(self) -> ExitView | None:
        return self.exits[self._queue[0][1]] if self._queue else None

    def due(self, height: int) -> bool:
        """The head of the queue may be finalized in block `height`."""
        return bool(self._queue) and self._queue[0][0] <= height

    def owed_ahead_of(self, position: int) -> int:
        """What queued exits ahead of `position`'s exit claim (all of them if it has none)."""
        view = self.exits.get(position)
        ahead = (
            self._queue
            if view is None
            else self._queue[: bisect.bisect_left(self._queue, view.priority)]
        )
        return sum(self.exits[utxo_pos].amount for _, utxo_pos in ahead)


def start_exit_call(
    plasma_id: PlasmaId,
    position: int,
    signed: SignedPlasmaTx,
    tree: MerkleTree | None,
    confirmations: tuple[Confirmation, ...],
) -> PlasmaStartExit:
    """The exit of output `position` of `signed`, whose block's tree is `tree` (None for a
    deposit, which needs no proof)."""
    blknum, txindex, _ = split_utxo_pos(position)
    proof = b"" if tree is None or is_deposit_block(blknum) else tree.proof(txindex)
    return PlasmaStartExit(plasma_id, position, signed, proof, confirmations)


def challenge_call(
    plasma_id: PlasmaId,
    position: int,
    spending_pos: int,
    spending: SignedPlasmaTx,
    tree: MerkleTree,
    confirmation: bytes,
) -> PlasmaChallengeExit:
    _, txindex, _ = split_utxo_pos(spending_pos)
    return PlasmaChallengeExit(
        plasma_id, position, spending_pos, spending, tree.proof(txindex), confirmation
    )
