"""The payment timing rules, each in one place: how far ahead a payer's lock expires, which
expiries a hop accepts, when a new lock is too late to send, and which channels a node uses.

All in blocks (DESIGN.md "Payments across hops"): `reveal_timeout` is the time a node needs to
land a transaction; a lock's expiry E must leave more than that after the current height, and
at most the channel's window (min(settle_timeout, max_lock_timeout)).
"""

from __future__ import annotations

PAYER_LOCK_TIMEOUT = 50  # blocks from now to a new lock's expiry, by default
