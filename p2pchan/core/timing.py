"""The timing rules of locks, each in one place (DESIGN.md "Payments across hops").

All in blocks. `reveal_timeout` is the time a node needs to land a transaction on layer 1; a
channel's *window* is min(settle_timeout, max_lock_timeout): the furthest expiry E it accepts
for a new lock. A node uses no channel whose settle_timeout < 2 x reveal_timeout; a hop, the
payee included, accepts a lock only if reveal_timeout < E - height <= window; a payer's lock
expires `PAYER_LOCK_TIMEOUT` blocks ahead (capped by the window, raised to an invoice's
minimum); a new lock that would expire within reveal_timeout blocks is not worth sending. A mediator
forwards a lock only over a channel whose settle_timeout covers E - height, and unlocks its
outgoing lock off-chain only while more than reveal_timeout blocks remain before E (later, the
secret is registered on layer 1 first).
"""

from __future__ import annotations

PAYER_LOCK_TIMEOUT = 50  # blocks from now to a new lock's expiry, by default


def channel_usable(settle_timeout: int, reveal_timeout: int) -> bool:
    """Whether a node may use a channel: its window must leave time to register a secret and
    then to close, each within reveal_timeout."""
    return settle_timeout >= 2 * reveal_timeout


def min_settle_timeout(reveal_timeout: int, contract_minimum: int) -> int:
    """The smallest settle_timeout a node opens a channel with."""
    return max(contract_minimum, 2 * reveal_timeout)


def lock_window(settle_timeout: int, max_lock_timeout: int) -> int:
    """How far ahead of the current height a new lock on this channel may expire."""
    return min(settle_timeout, max_lock_timeout)


def payer_lock_timeout(window: int, min_final_lock_timeout: int = 0) -> int | None:
    """Blocks from now to the expiry of a payer's new lock, or None if the payee asks for more
    than the channel's window allows."""
    timeout = max(min(PAYER_LOCK_TIMEOUT, window), min_final_lock_timeout)
    return timeout if timeout <= window else None


def too_late_to_send(expiration: int, height: int, reveal_timeout: int) -> bool:
    """A new lock expiring within reveal_timeout blocks is not worth signing: the payee would
    fail it, and one already expired in the partner's view makes it refuse the whole update it
    rides on."""
    return expiration <= height + reveal_timeout


def too_close_to_claim(expiration: int, height: int, reveal_timeout: int) -> bool:
    """A hop claims or forwards a lock only while more than reveal_timeout blocks remain."""
    return expiration - height <= reveal_timeout


def too_far_to_forward(expiration: int, height: int, settle_timeout: int) -> bool:
    """A mediator forwards only if E - height <= the outgoing channel's settle_timeout: the
    downstream partner could otherwise claim on chain after our own claim upstream is over."""
    return expiration - height > settle_timeout


def may_unlock_downstream(expiration: int, height: int, reveal_timeout: int) -> bool:
    """A mediator that learned the secret pays its outgoing lock off-chain at once only while
    more than reveal_timeout blocks remain; later it registers the secret first (its incoming
    lock's claim duty does), and the outgoing lock is unlocked once layer 1 shows it."""
    return expiration - height > reveal_timeout
