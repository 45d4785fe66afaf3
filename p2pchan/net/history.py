"""The payment history's upkeep in the shell: the journal compacted into the payments table off
the hot path, history queries answered from that table, and retention (`--keep-payments`).

Each step of the node journals its payment events (`storage/node_store.py`); `PaymentHistory`
moves them into the indexed payments table (`storage/payment_history.py`) when nobody waits for
the node: once it has journalled nothing for `IDLE_SECONDS`, or when the journal holds
`HIGH_WATER_EVENTS` (then down to half that). So a burst of payments pays nothing for the
index while it lasts, and a restart reads at most about `HIGH_WATER_EVENTS` events of journal
for the payments still pending (`payment_history.load_pending`) and compacts them once it
serves. Whatever reads history (`payments`, `info`, the check that an invoice was never paid)
first compacts what is left, so it sees every record.

Each batch is one transaction of at most `BATCH_EVENTS` journal events, between the node's
steps (a batch holds up the event loop while it runs, as every write does: see
`storage/db.py`), so no step waits long behind one.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import structlog
import trio

from p2pchan.storage.db import NodeDatabase
from p2pchan.storage.payment_history import Compacted, compact, journal_events, paid_before
from p2pchan.storage.retention import Pruned, prune_invoices, prune_payments
from p2pchan.types import SecretHash

log = structlog.get_logger(__name__)

BATCH_EVENTS = 4096  # journal events per compaction transaction
HIGH_WATER_EVENTS = 100_000  # compact even while busy beyond this many events
IDLE_SECONDS = 0.5  # nothing journalled for this long: compact
CHECK_SECONDS = 0.25
PRUNE_EVERY_SECONDS = 60.0
PRUNE_BATCH_ROWS = 5000
DAY_MS = 86_400_000


class PaymentHistory:
    """Compacts the journal, prunes, and gives the queries a compacted table.

    `protected()` gives the payment hashes the node still holds a lock or a live payment of
    (never pruned); `now_ms()` the wall clock."""

    def __init__(
        self,
        database: NodeDatabase,
        *,
        keep_days: float | None,
        protected: Callable[[], set[SecretHash]],
        now_ms: Callable[[], int],
    ) -> None:
        self.database = database
        self.keep_days = keep_days
        self._protected = protected
        self._now_ms = now_ms
        self.backlog = 0  # journal events not compacted yet (about: a hint for scheduling)
        self._last_journalled = -math.inf
        self._wake = trio.Event()

    # -- compaction --------------------------------------------------------------------------

    def start(self) -> None:
        """Count what the journal holds at start-up (what a crash left, or an upgrade: the
        compactor moves it once the node runs)."""
        self.backlog = self.database.run_now(journal_events)
        if self.backlog:
            log.info("payment_journal_to_compact", events=self.backlog)

    def journalled(self, events: int) -> None:
        """A step wrote this many payment events to the journal (called by the driver)."""
        if not events:
            return
        self.backlog += events
        self._last_journalled = trio.current_time()
        if self.backlog >= HIGH_WATER_EVENTS:
            self._wake.set()

    async def catch_up(self) -> None:
        """Compact everything journalled so far, a batch at a time, letting steps in between."""
        while self.backlog > 0:
            await self._batch()
            await trio.lowlevel.checkpoint()

    def catch_up_now(self) -> None:
        """Compact everything journalled so far, at once (called under the driver's step lock,
        after `catch_up`: only what came in since is left)."""
        while self.backlog > 0:
            self._done(self.database.run_now(lambda connection: compact(connection, BATCH_EVENTS)))

    async def _batch(self) -> None:
        self._done(await self.database.run(lambda c: compact(c, BATCH_EVENTS)))

    def _done(self, step: Compacted) -> None:
        self.backlog = 0 if step.done else max(self.backlog - step.events, 1)

    def paid_before_now(self, payment_hash: SecretHash) -> bool:
        """Whether a payment of ours with this hash succeeded (under the driver's step lock,
        so that no step can make one final in between)."""
        self.catch_up_now()
        return self.database.run_now(functools.partial(paid_before, payment_hash=payment_hash))

    # -- the task ----------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Compact when the node is idle or the journal is long, prune when due; until
        cancelled."""
        task_status.started()
        next_prune = trio.current_time()
        while True:
            with trio.move_on_after(CHECK_SECONDS):
                await self._wake.wait()
            self._wake = trio.Event()
            if self.backlog >= HIGH_WATER_EVENTS:
                while self.backlog > HIGH_WATER_EVENTS // 2:
                    await self._batch()
                    await trio.lowlevel.checkpoint()
            while self.backlog > 0 and self._idle():
                await self._batch()
                await trio.lowlevel.checkpoint()
            if self.keep_days is not None and trio.current_time() >= next_prune:
                await self.prune()
                next_prune = trio.current_time() + min(
                    PRUNE_EVERY_SECONDS, self.keep_days * DAY_MS / 1000 / 4
                )

    def _idle(self) -> bool:
        return trio.current_time() - self._last_journalled >= IDLE_SECONDS

    # -- retention ---------------------------------------------------------------------------

    async def prune(self) -> tuple[int, int]:
        """Delete the records and invoices older than `keep_days` that nothing needs, a batch
        per transaction; the payment records and invoices deleted."""
        if self.keep_days is None:
            return 0, 0
        await self.catch_up()
        now = self._now_ms()
        before = now - round(self.keep_days * DAY_MS)
        protected = self._protected()
        payments = await self._prune_all(prune_payments, before_ms=before, protected=protected)
        invoices = await self._prune_all(
            prune_invoices, before_ms=before, now_ms=now, protected=protected
        )
        if payments or invoices:
            log.info("payment_history_pruned", payments=payments, invoices=invoices)
        return payments, invoices

    async def _prune_all(self, prune: Callable[..., Pruned], **arguments: Any) -> int:
        """Run `prune` a batch per transaction until it is done; the rows it deleted."""
        deleted = after = 0
        while True:
            work = functools.partial(prune, after=after, limit=PRUNE_BATCH_ROWS, **arguments)
            step = await self.database.run(work)
            deleted, after = deleted + step.deleted, step.after
            if step.done:
                return deleted
            await trio.lowlevel.checkpoint()
