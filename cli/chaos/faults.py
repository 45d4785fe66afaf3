"""Carrying out a chaos schedule on a running network: signals to node and layer-1 processes,
states of the link proxies, cheating closes and attack modes; and healing all of it.

Each fault runs in its own task from its start time and undoes itself after its duration
(a killed node restarts on the same port, a paused one continues, a link heals, an attacker
restarts honest); a node a fault took stays up for `recovery` seconds before the next fault
may take it. A fault whose target cannot take it at that moment (the cheat's channel
already closed, say) is counted as skipped, never forced. `heal()` undoes whatever is still in
force when the run ends or is cancelled.
"""

from __future__ import annotations

import contextlib
import signal
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import structlog
import trio

from p2pchan.errors import P2pchanError, UserError
from p2pchan_cli.chaos.proxy import LinkProxy
from p2pchan_cli.chaos.schedule import Fault, FaultKind
from p2pchan_cli.localnet.network import Network

log = structlog.get_logger(__name__)

RESTART_ATTEMPTS = 5
TARGET_WAIT = 5.0  # how long a fault waits for its process to be free of an earlier one
_NODE_FAULTS = (FaultKind.KILL, FaultKind.PAUSE, FaultKind.MISBEHAVE, FaultKind.CHEAT)


@dataclass
class Injector:
    network: Network
    proxies: dict[tuple[str, str], LinkProxy]
    done: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    attackers: set[str] = field(default_factory=set)
    paused: set[str] = field(default_factory=set)
    down: set[str] = field(default_factory=set)  # node aliases, or "l1"
    errors: list[str] = field(default_factory=list)
    recovery: float = 0.0  # seconds a node stays up after a fault before the next may take it
    _locks: dict[str, trio.Lock] = field(default_factory=dict)

    def _lock(self, name: str) -> trio.Lock:
        return self._locks.setdefault(name, trio.Lock())

    async def run(self, schedule: Sequence[Fault]) -> None:
        began = trio.current_time()
        async with trio.open_nursery() as nursery:
            for fault in schedule:
                await trio.sleep_until(began + fault.at)
                nursery.start_soon(self._one, fault)

    async def _one(self, fault: Fault) -> None:
        held = self._held_by(fault)
        try:
            async with contextlib.AsyncExitStack() as stack:
                acquired = 0
                with trio.move_on_after(TARGET_WAIT):
                    for name in held:
                        await stack.enter_async_context(self._lock(name))
                        acquired += 1
                if acquired < len(held):
                    # Still held by an earlier fault that ran long (a slow restart on a loaded
                    # machine): skipped, so faults never pile up on one process.
                    self.skipped[str(fault.kind)] += 1
                    return
                applied = await self._apply(fault)
                if applied and fault.kind in _NODE_FAULTS:
                    # Up and running for a while before the next fault may take the node:
                    # back-to-back kills (each queued behind the last restart) would keep it
                    # down for good, outside invariant 3's promise (a soak found an honest
                    # mediator killed again within a second of each restart, for longer than
                    # reveal_timeout blocks, unable to claim a lock it had paid out).
                    await trio.sleep(self.recovery)
        except (P2pchanError, OSError) as error:
            self.errors.append(f"{fault.kind} {','.join(fault.targets)}: {error}")
            log.warning("chaos_fault_failed", kind=str(fault.kind), error=str(error))
            applied = False
        (self.done if applied else self.skipped)[str(fault.kind)] += 1

    @staticmethod
    def _held_by(fault: Fault) -> list[str]:
        """The processes a fault acts on, each under its lock while the fault lasts."""
        if fault.kind == FaultKind.L1_RESTART:
            return ["l1"]
        if fault.kind in _NODE_FAULTS:
            return sorted(fault.targets)
        return []

    async def _apply(self, fault: Fault) -> bool:
        kind, targets = fault.kind, fault.targets
        if kind == FaultKind.KILL:
            await self.kill_node(targets[0])
            await trio.sleep(fault.duration)
            await self.restart_node(targets[0])
            return True
        if kind == FaultKind.PAUSE:
            self.pause(targets[0])
            await trio.sleep(fault.duration)
            self.resume(targets[0])
            return True
        if kind == FaultKind.L1_RESTART:
            await self.kill_l1()
            await trio.sleep(fault.duration)
            await self.restart_l1()
            return True
        if kind == FaultKind.RESET:
            self.proxies[(targets[0], targets[1])].reset()
            return True
        if kind in (FaultKind.DELAY, FaultKind.DROP):
            proxy = self.proxies[(targets[0], targets[1])]
            if kind == FaultKind.DELAY:
                proxy.set_delay(float(fault.detail))
            else:
                proxy.set_dropping(True)
            await trio.sleep(fault.duration)
            proxy.set_delay(0.0)
            proxy.set_dropping(False)
            return True
        if kind == FaultKind.PARTITION:
            half = set(targets)
            crossing = [p for (a, b), p in self.proxies.items() if (a in half) != (b in half)]
            for proxy in crossing:
                proxy.set_partitioned(True)
            await trio.sleep(fault.duration)
            for proxy in crossing:
                proxy.set_partitioned(False)
            return True
        if kind == FaultKind.CHEAT:
            return await self._cheat(fault)
        return await self._misbehave(fault)

    async def _cheat(self, fault: Fault) -> bool:
        cheater, victim = fault.targets
        channel_id = self.network.channel_ids.get(frozenset((cheater, victim)))
        if channel_id is None or cheater in self.down or victim in self.down:
            return False
        channels = []
        with trio.move_on_after(5):
            channels = await self.network.nodes[cheater].call("channels")
        view = next((c for c in channels if c["channel_id"] == channel_id), None)
        if view is None or view["state"] != "open":
            return False  # closed already (an earlier cheat, an expired lock)
        self.attackers.add(cheater)
        self.pause(victim)
        try:
            await self.network.nodes[cheater].call(
                "close", channel_id=channel_id, force=True, cheat=True, wait=False
            )
            await trio.sleep(fault.duration)
        finally:
            self.resume(victim)
        return True

    async def _misbehave(self, fault: Fault) -> bool:
        alias = fault.targets[0]
        node = self.network.nodes[alias]
        honest_modes = node.misbehave
        self.attackers.add(alias)
        node.misbehave = (fault.detail,)
        await self.kill_node(alias)
        await self.restart_node(alias)
        try:
            await trio.sleep(fault.duration)
        finally:
            node.misbehave = honest_modes
            await self.kill_node(alias)
            await self.restart_node(alias)
        return True

    async def kill_node(self, alias: str) -> None:
        child = self.network.nodes[alias].child
        if child is not None and child.running:
            self.down.add(alias)
            child.kill()
            with trio.CancelScope(shield=True):
                await child.wait_exit()

    async def restart_node(self, alias: str) -> None:
        """Start the node again, retrying (a start can fail under load, or while layer 1 is
        itself restarting): a fault never leaves a node down."""
        with trio.CancelScope(shield=True):
            await self._until_started(alias, lambda: self.network.start_node(alias))
        self.down.discard(alias)

    def pause(self, alias: str) -> None:
        child = self.network.nodes[alias].child
        if child is not None:
            self.paused.add(alias)
            child.signal(signal.SIGSTOP)

    def resume(self, alias: str) -> None:
        child = self.network.nodes[alias].child
        if child is not None:
            child.signal(signal.SIGCONT)
        self.paused.discard(alias)

    async def kill_l1(self) -> None:
        l1 = self.network.l1
        if l1 is not None and l1.running:
            self.down.add("l1")
            l1.kill()
            with trio.CancelScope(shield=True):
                await l1.wait_exit()

    async def restart_l1(self) -> None:
        with trio.CancelScope(shield=True):
            await self._until_started("l1", self.network.start_l1)
        self.down.discard("l1")

    async def _until_started(self, name: str, start: Callable[[], Awaitable[None]]) -> None:
        for attempt in range(1, RESTART_ATTEMPTS + 1):
            try:
                await start()
                return
            except P2pchanError as error:
                self.errors.append(f"restart of {name} (attempt {attempt}): {error}"[:300])
                log.warning("chaos_restart_failed", name=name, attempt=attempt, error=str(error))
        raise UserError(f"{name} did not restart after {RESTART_ATTEMPTS} attempts")

    async def heal(self, *, restart: bool = True) -> None:
        """Undo every fault still in force: links, pauses, downed processes, attack modes
        (without `restart`, when the run is stopping: links and pauses only, so that every
        process can be stopped)."""
        with trio.CancelScope(shield=True):
            for proxy in self.proxies.values():
                proxy.heal()
            for alias in list(self.paused):
                self.resume(alias)
            if not restart:
                return
            if "l1" in self.down or (self.network.l1 is not None and not self.network.l1.running):
                await self.restart_l1()
            topology = self.network.topology
            for alias, node in self.network.nodes.items():
                honest_modes = topology.node(alias).misbehave
                running = node.child is not None and node.child.running
                if node.misbehave != honest_modes:
                    node.misbehave = honest_modes
                    await self.kill_node(alias)
                    running = False
                if not running:
                    await self.restart_node(alias)
