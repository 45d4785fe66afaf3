"""One chaos run, start to verdict: a network behind link proxies, random payments while the
schedule injects faults, then heal, let every payment resolve, close and settle every channel,
observe, and check the invariants.

The run owns every process it starts (none outlives it, also on Ctrl-C) and every proxy (tasks
of its own). Its nodes all start with `--dev` (any of them may be told to cheat or misbehave)
and a short keep-alive, so a pause of a few seconds is noticed as a dead peer. Payments and
faults come from separate streams of the seed (`2·seed` and `2·seed + 1`), so a run replays
the same plan of both whatever happens during it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
import trio

from p2pchan.core.timing import PAYER_LOCK_TIMEOUT
from p2pchan.errors import P2pchanError, UserError
from p2pchan_cli.chaos.faults import Injector
from p2pchan_cli.chaos.invariants import ChannelSample, Record, Verdict, check
from p2pchan_cli.chaos.observe import observe_chain, records_of, sample_node
from p2pchan_cli.chaos.proxy import LinkProxy
from p2pchan_cli.chaos.schedule import Fault, FaultKind, Timings, make_schedule
from p2pchan_cli.localnet.activity import (
    PaymentOutcome,
    default_max_amount,
    payment_pairs,
    random_plan,
    summarize,
)
from p2pchan_cli.localnet.driver import run_plan
from p2pchan_cli.localnet.network import HOST, Network
from p2pchan_cli.localnet.supervisor import poll_until
from p2pchan_cli.localnet.topology import Topology

log = structlog.get_logger(__name__)

PING_INTERVAL = 0.5
PONG_TIMEOUT = 1.0
RECONNECT_MAX = 1.0
REVEAL_TIMEOUT_BLOCKS = 10  # the nodes' default
SAMPLE_INTERVAL = 1.0
READY_TIMEOUT = 60.0  # a node's start waits up to 30 s for layer 1, which may be restarting too
POLL_INTERVAL = 0.5


@dataclass
class ChaosOptions:
    topology: Topology
    duration: float
    seed: int
    weights: dict[FaultKind, int]
    directory: Path
    rate: float = 5.0
    fault_interval: float = 2.0
    neighbours_only: bool = False
    concurrency: int = 32


@dataclass
class ChaosResult:
    seed: int
    schedule: list[Fault]
    faults: dict[str, int]
    skipped: dict[str, int]
    payments: dict[str, Any]
    verdict: Verdict
    attackers: list[str]
    fault_errors: list[str]
    seconds: float
    phases: dict[str, float] = field(default_factory=dict)


def timings_for(topology: Topology) -> Timings:
    """A node away at most two thirds of reveal_timeout blocks; the keep-alive of the nodes."""
    return Timings(
        keep_alive=PING_INTERVAL + PONG_TIMEOUT,
        max_away=topology.block_time * REVEAL_TIMEOUT_BLOCKS * 2 / 3,
    )


def plan_schedule(options: ChaosOptions) -> list[Fault]:
    return make_schedule(
        2 * options.seed + 1,
        options.duration,
        options.topology,
        options.weights,
        timings_for(options.topology),
        options.fault_interval,
    )


class ChaosRun:
    def __init__(self, options: ChaosOptions, progress: Callable[[str], None]) -> None:
        self.options = options
        self.progress = progress
        self.network = Network(
            options.directory,
            options.topology,
            dev=True,
            node_args=(
                "--ping-interval",
                str(PING_INTERVAL),
                "--pong-timeout",
                str(PONG_TIMEOUT),
                "--reconnect-max",
                str(RECONNECT_MAX),
            ),
            ready_timeout=READY_TIMEOUT,
        )
        self.proxies: dict[tuple[str, str], LinkProxy] = {}
        self.injector = Injector(
            self.network, self.proxies, recovery=timings_for(options.topology).recovery
        )
        self.samples: list[ChannelSample] = []
        self.phases: dict[str, float] = {}
        self.schedule: list[Fault] = []

    async def run(self) -> ChaosResult:
        began = time.monotonic()
        try:
            async with trio.open_nursery() as nursery:
                await self._bring_up(nursery)
                outcomes, payment_seconds = await self._chaos(nursery)
                await self._settle_everything()
                verdict = await self._judge()
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await self.network.stop_all()
        aliases_by_id = {node.node_id: alias for alias, node in self.network.nodes.items()}
        summary = summarize(outcomes, payment_seconds, aliases_by_id)
        return ChaosResult(
            seed=self.options.seed,
            schedule=self.schedule,
            faults=dict(self.injector.done),
            skipped=dict(self.injector.skipped),
            payments={
                key: summary[key]
                for key in (
                    "attempted",
                    "succeeded",
                    "failed",
                    "pending",
                    "multi_hop",
                    "failure_reasons",
                )
            },
            verdict=verdict,
            attackers=sorted(self.injector.attackers),
            fault_errors=self.injector.errors,
            seconds=time.monotonic() - began,
            phases=self.phases,
        )

    def _phase(self, name: str, started: float) -> None:
        self.phases[name] = round(time.monotonic() - started, 2)
        self.progress(f"{name} done in {self.phases[name]:.1f} s")

    async def _bring_up(self, nursery: trio.Nursery) -> None:
        started = time.monotonic()
        network = self.network
        network.prepare()
        await network.start_l1()
        await network.start_nodes()
        await network.fund()
        for channel in network.topology.channels:
            proxy = LinkProxy(f"{channel.a}-{channel.b}", network.nodes[channel.b].port)
            await nursery.start(proxy.serve)
            self.proxies[(channel.a, channel.b)] = proxy
        await network.connect(lambda a, b: (HOST, self.proxies[(a, b)].port))
        await network.open_channels()
        await network.apply_fees()
        await network.wait_for_gossip()
        self.injector.attackers.update(
            spec.alias for spec in network.topology.nodes if spec.misbehave
        )
        self._phase("network up", started)

    async def _chaos(self, nursery: trio.Nursery) -> tuple[list[PaymentOutcome], float]:
        started = time.monotonic()
        options = self.options
        topology = options.topology
        pairs = payment_pairs(topology, neighbours_only=options.neighbours_only)
        plan = random_plan(
            2 * options.seed,
            options.rate,
            options.duration,
            pairs,
            default_max_amount(topology),
        )
        self.schedule = plan_schedule(options)
        nursery.start_soon(self._sampler)
        datadirs = {alias: node.datadir for alias, node in self.network.nodes.items()}
        node_ids = {alias: node.node_id for alias, node in self.network.nodes.items()}
        payment_timeout = topology.block_time * PAYER_LOCK_TIMEOUT
        result: list[tuple[list[PaymentOutcome], float]] = []

        async def payments() -> None:
            result.append(
                await run_plan(
                    plan,
                    datadirs,
                    node_ids,
                    concurrency=options.concurrency,
                    payment_timeout=payment_timeout,
                    on_outcome=lambda _outcome: None,
                )
            )

        try:
            async with trio.open_nursery() as inner:
                inner.start_soon(payments)
                inner.start_soon(self.injector.run, self.schedule)
        except BaseException:
            await self.injector.heal(restart=False)  # stopping (Ctrl-C): nothing to restart
            raise
        await self.injector.heal()
        self._phase("chaos", started)
        return result[0]

    async def _sampler(self) -> None:
        while True:
            await self._sample_all()
            await trio.sleep(SAMPLE_INTERVAL)

    async def _sample_all(self) -> None:
        for alias in self.network.nodes:
            if alias in self.injector.paused or alias in self.injector.down:
                continue
            taken = await sample_node(self.network, alias)
            if taken is not None:
                self.samples.extend(taken)

    async def _settle_everything(self) -> None:
        """Every payment resolved, then every channel closed (cooperatively, else by force)
        and settled on layer 1 with nothing left to unlock."""
        started = time.monotonic()
        block_time = self.options.topology.block_time
        longest_window = max((c.settle_timeout for c in self.options.topology.channels), default=20)
        resolve_deadline = block_time * (PAYER_LOCK_TIMEOUT + longest_window + 40) + 60
        with trio.move_on_after(resolve_deadline):
            await poll_until(self._all_resolved, POLL_INTERVAL)
        self._phase("payments resolved", started)
        started = time.monotonic()
        async with trio.open_nursery() as nursery:
            for ends, channel_id in self.network.channel_ids.items():
                opener = sorted(ends)[0]
                nursery.start_soon(self._close, opener, channel_id)
        settle_deadline = block_time * (longest_window + 2 * PAYER_LOCK_TIMEOUT) + 120
        with trio.move_on_after(settle_deadline):
            await poll_until(self._all_settled, POLL_INTERVAL)
        self._phase("channels settled", started)

    async def _all_resolved(self) -> bool:
        for node in self.network.nodes.values():
            try:
                if await node.call("payments", status="pending"):
                    return False
                if any(c["pending_locks"] for c in await node.call("channels")):
                    return False
            except (P2pchanError, OSError):
                return False
        return True

    async def _close(self, alias: str, channel_id: str) -> None:
        node = self.network.nodes[alias]
        try:
            views = {c["channel_id"]: c for c in await node.call("channels")}
            if views.get(channel_id, {}).get("state") != "open":
                return  # closing or settled already (a cheat, an expired lock)
            with trio.move_on_after(30):
                await node.call("close", channel_id=channel_id, wait=False)
                return
        except (P2pchanError, OSError) as error:
            log.info("chaos_cooperative_close_refused", channel=channel_id, reason=str(error))
        try:
            await node.call("close", channel_id=channel_id, force=True, wait=False)
        except (P2pchanError, OSError) as error:
            log.info("chaos_force_close_refused", channel=channel_id, reason=str(error))

    async def _all_settled(self) -> bool:
        for node in self.network.nodes.values():
            try:
                channels = await node.call("channels")
            except (P2pchanError, OSError):
                return False
            if any(c["state"] != "settled" or c["pending_locks"] for c in channels):
                return False
        return True

    async def _judge(self) -> Verdict:
        started = time.monotonic()
        await self._sample_all()
        records: dict[str, list[Record]] = {}
        for alias, node in self.network.nodes.items():
            try:
                records[alias] = records_of(await node.every_payment())
            except (P2pchanError, OSError) as error:
                raise UserError(f"cannot read {alias}'s payment records: {error}") from None
        honest = set(self.network.nodes) - self.injector.attackers
        observed = await observe_chain(self.network, honest, records, self.samples)
        verdict = check(observed)
        self._phase("invariants checked", started)
        return verdict
