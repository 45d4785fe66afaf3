"""What a user's Plasma outputs are worth now: each one's status and the wallet's balance.

Pure reads of a `WatcherMachine`, so the node's `plasma utxos` and `plasma balance` and the
tests say the same thing. An output's status is one of

- `spendable`: confirmed by every input owner, unspent, not in flight, not exiting, chain good;
- `pending`: received but not confirmed yet, spent by a transaction of ours not found in a
  block yet, or stuck on a bad chain until its exit can start (a confirmation is missing);
- `exiting`: asked to exit, or its exit is queued on layer 1;
- `exited`: its exit was paid;
- `spent`: spent in a valid block (or its exit challenged with such a spend).
"""

from __future__ import annotations

from dataclasses import dataclass

from p2pchan.l1.plasma_state import ExitStatus
from p2pchan.plasma.watcher import WatcherMachine

OUTPUT_STATUSES = ("pending", "spendable", "exiting", "exited", "spent")


def output_status(machine: WatcherMachine, position: int) -> str:
    view = machine.exits.exits.get(position)
    if view is not None and view.status == ExitStatus.PAID:
        return "exited"
    if view is not None and view.status == ExitStatus.CHALLENGED:
        return "spent"
    if position not in machine.owned or position in machine.chain.spends:
        return "spent"
    if view is not None:
        return "exiting"
    confirmed = machine.confirmed(position)
    if position in machine.exit_duties and confirmed:
        return "exiting"  # its exit is being submitted (on a bad chain: even if in flight)
    if position in machine.in_flight or not confirmed:
        return "pending"
    return "pending" if machine.bad is not None else "spendable"


@dataclass(frozen=True, slots=True)
class Balance:
    spendable: int = 0
    pending: int = 0
    exiting: int = 0
    exited: int = 0


def balance(machine: WatcherMachine, positions: list[tuple[int, int]]) -> Balance:
    """The sums by status of `positions` ((utxo_pos, amount): every output the user ever had)."""
    sums = dict.fromkeys(OUTPUT_STATUSES, 0)
    for position, amount in positions:
        sums[output_status(machine, position)] += amount
    return Balance(sums["spendable"], sums["pending"], sums["exiting"], sums["exited"])
