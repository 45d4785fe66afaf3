"""The garbage collector's settings for a long-running node process.

CPython's cyclic collector runs a young collection every 700 net new container objects and, every
few dozen of those, a full one that walks every live object: the imported modules and the loaded
state included. A node paying 15,000 payments a second allocates a few tuples per payment, nearly
all freed at once by reference counting, so the collector found little and cost much: in
`bench channel` (40,000 payments) about 0.29 s of each node's CPU, 10 %, and six full
collections of 27 ms each, every in-flight payment waiting through them.

`tune_for_server`, called once start-up is done, moves what start-up built (modules, the loaded
state) out of the collector's reach for good (`gc.freeze`) and lets the young generation grow to
`YOUNG_THRESHOLD` before a collection. Cycles are still collected, later; what reference
counting frees is freed as before.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000  # net new container objects between young collections (CPython: 700)


def tune_for_server() -> None:
    """Freeze the start-up heap and collect the young generation less often."""
    gc.collect()  # leave no garbage among what is frozen
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
