"""The fault injector against fake processes, in virtual time: a node a fault took stays up
for its recovery time before the next fault may take it, and a fault that cannot have its node
within the wait is skipped, never stacked."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import trio

from p2pchan_cli.chaos.faults import TARGET_WAIT, Injector
from p2pchan_cli.chaos.schedule import Fault, FaultKind

RECOVERY = 4.0


@dataclass
class FakeChild:
    events: list[tuple[str, float]]
    alive: bool = True

    @property
    def running(self) -> bool:
        return self.alive

    def kill(self) -> None:
        self.alive = False
        self.events.append(("kill", trio.current_time()))

    async def wait_exit(self) -> int:
        return -9


@dataclass
class FakeNode:
    child: FakeChild


@dataclass
class FakeNetwork:
    events: list[tuple[str, float]] = field(default_factory=list)
    nodes: dict[str, FakeNode] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.nodes["ann"] = FakeNode(FakeChild(self.events))

    async def start_node(self, alias: str) -> None:
        await trio.sleep(0.5)  # a start takes a while
        self.nodes[alias].child = FakeChild(self.events)
        self.events.append(("ready", trio.current_time()))


def kill(at: float, duration: float = 1.0) -> Fault:
    return Fault(at, FaultKind.KILL, ("ann",), duration)


async def run(schedule: list[Fault]) -> tuple[Injector, list[tuple[str, float]]]:
    network = FakeNetwork()
    injector = Injector(network, {}, recovery=RECOVERY)  # type: ignore[arg-type]
    began = trio.current_time()
    await injector.run(schedule)
    return injector, [(what, at - began) for what, at in network.events]


async def test_a_node_stays_up_for_its_recovery_before_the_next_fault(
    autojump_clock: Any,
) -> None:
    injector, events = await run([kill(0.0), kill(1.0)])
    # killed at 0, ready at 1.5 (down 1 s, a start of 0.5 s), up until 5.5: only then the
    # second kill, which waited for the node
    assert events == [("kill", 0.0), ("ready", 1.5), ("kill", 5.5), ("ready", 7.0)]
    assert injector.done == {"kill": 2} and not injector.skipped
    assert not injector.down


async def test_a_fault_that_cannot_have_its_node_in_time_is_skipped(autojump_clock: Any) -> None:
    long_down = TARGET_WAIT + 1.0
    injector, events = await run([kill(0.0, long_down), kill(0.5)])
    assert [what for what, _ in events] == ["kill", "ready"]
    assert injector.done == {"kill": 1} and injector.skipped == {"kill": 1}
