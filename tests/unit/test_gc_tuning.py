"""The node's collector settings: what start-up built is out of the collector's reach, young
collections are rarer, and cycles made afterwards are still collected."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from p2pchan.gc_tuning import YOUNG_THRESHOLD, tune_for_server


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


class Node:
    def __init__(self) -> None:
        self.partner: Node | None = None


@pytest.mark.usefixtures("restored_gc")
def test_start_up_objects_are_frozen_and_young_collections_rarer() -> None:
    loaded_state = {"channels": [Node() for _ in range(3)]}
    older = gc.get_threshold()[1:]
    tune_for_server()
    assert not any(tracked is loaded_state for tracked in gc.get_objects())  # never walked again
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD
    assert gc.get_threshold()[1:] == older


@pytest.mark.usefixtures("restored_gc")
def test_a_cycle_made_after_start_up_is_still_collected() -> None:
    tune_for_server()
    first, second = Node(), Node()
    first.partner, second.partner = second, first
    gone = weakref.ref(first)
    del first, second
    gc.collect()
    assert gone() is None
