"""`p2pchan bench gossip`: how long a network of node processes takes to learn itself.

Layer 1 and `--nodes` node processes; `--channels` channels over a ring plus random chords
(`bench_topology`, from `--seed`). Every channel's two nodes connect first, then every channel
is opened by one end with a deposit, all at once: so a message floods a network whose links
are all up (connecting while opening made a late node learn everything at its first
connection, and that, not the flood, set the spread: 15 s, measured). The clock starts when
the last `open` returns (the last channel usable); the run is done when every node has stored
every channel announcement and both directions' updates of every channel, read from the
nodes' `gossip_stored` debug lines (`bench_gossip_logs`), then checked against each node's
`graph` RPC. Reported: those seconds, per message the spread from its origin to the last node
and the per-node delays, node announcements apart, bytes and messages each node sent to its
peers (its sessions' counts, all traffic since connecting: the opens' channel messages and
keep-alives included), and each node's resident memory and CPU time.

Fifty interpreters on two cores: nodes start a few at a time, log only gossip lines and
warnings, and the whole run has a deadline; processes and the temporary directory go away
whatever happens (`bench_network`).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from p2pchan.errors import UserError
from p2pchan_cli.bench_gossip_logs import (
    LogTail,
    MessageKey,
    Sightings,
    channel_key,
    distribution,
    node_key,
    propagation,
    update_key,
)
from p2pchan_cli.bench_l1 import machine_description
from p2pchan_cli.bench_network import (
    BenchNetwork,
    BenchNode,
    bench_network,
    cpu_snapshot,
    load_average,
    resident_mb,
)
from p2pchan_cli.bench_progress import ProgressLine
from p2pchan_cli.bench_topology import ring_with_chords

BLOCK_TIME = 0.5
DEPOSIT = 100_000
OPENS_AT_ONCE = 16
POLL_SECONDS = 0.2


@dataclass(frozen=True)
class GossipBenchConfig:
    nodes: int = 50
    channels: int = 100
    seed: int = 1
    deadline: float = 300.0  # the whole run, start-up and teardown included
    workdir: Path | None = None  # keep the nodes' directories and logs here


@dataclass(frozen=True)
class OpenedChannel:
    channel_id: str
    opener: str  # node ids, hex
    partner: str
    usable_at: float  # Unix seconds when `open` returned


def expected_messages(channels: list[OpenedChannel]) -> tuple[list[MessageKey], list[MessageKey]]:
    """The channel announcements and updates every node must learn, and the node
    announcements (every node with a channel announces itself)."""
    graph: list[MessageKey] = []
    nodes: dict[str, None] = {}
    for channel in channels:
        graph.append(channel_key(channel.channel_id))
        for end in (channel.opener, channel.partner):
            graph.append(update_key(channel.channel_id, end))
            nodes[end] = None
    return graph, [node_key(node_id) for node_id in nodes]


async def _start(
    network: BenchNetwork, config: GossipBenchConfig, progress: ProgressLine
) -> list[BenchNode]:
    progress.show(f"starting layer 1 and {config.nodes} nodes")
    await network.start_l1(BLOCK_TIME)
    nodes = [network.add_node(f"n{index}", log_level="debug") for index in range(config.nodes)]
    await network.start_nodes(
        nodes, lambda ready: progress.show(f"{ready}/{config.nodes} nodes ready")
    )
    return nodes


async def _connect_all(
    network: BenchNetwork,
    nodes: list[BenchNode],
    pairs: list[tuple[int, int]],
    progress: ProgressLine,
) -> None:
    """Every channel's two nodes connected before any channel opens, so a flood reaches every
    node from the first announcement on (not at a late node's first connection)."""
    limiter = trio.CapacityLimiter(OPENS_AT_ONCE)
    connected = 0

    async def connect(node: BenchNode, peer: BenchNode) -> None:
        nonlocal connected
        async with limiter:
            await network.connect(node, peer)
        connected += 1
        progress.show(f"{connected}/{len(pairs)} channel partners connected")

    async with trio.open_nursery() as nursery:
        for opener, partner in pairs:
            nursery.start_soon(connect, nodes[opener], nodes[partner])


async def _open_all(
    network: BenchNetwork,
    nodes: list[BenchNode],
    pairs: list[tuple[int, int]],
    progress: ProgressLine,
) -> list[OpenedChannel]:
    grants: dict[str, int] = {}
    for opener, _partner in pairs:
        grants[nodes[opener].node_id] = grants.get(nodes[opener].node_id, 1_000) + DEPOSIT
    progress.show(f"funding {len(grants)} nodes")
    await network.fund(grants)
    opened: list[OpenedChannel] = []
    limiter = trio.CapacityLimiter(OPENS_AT_ONCE)

    async def open_one(opener: BenchNode, partner: BenchNode) -> None:
        async with limiter:
            channel_id = await network.open_channel(opener, partner, DEPOSIT)
        opened.append(OpenedChannel(channel_id, opener.node_id, partner.node_id, time.time()))
        progress.show(f"{len(opened)}/{len(pairs)} channels usable")

    async with trio.open_nursery() as nursery:
        for opener, partner in pairs:
            nursery.start_soon(open_one, nodes[opener], nodes[partner])
    return opened


async def _converge(
    nodes: list[BenchNode],
    sightings: Sightings,
    expected: list[MessageKey],
    progress: ProgressLine,
) -> None:
    """Read the logs until every node stored every expected message (under the caller's
    deadline; the logs of other processes have nothing to wait on but polling)."""
    tails = {node.name: LogTail(node.child.log_path) for node in nodes}
    while True:
        for name, tail in tails.items():
            for line in tail.new_lines():
                sightings.add_line(name, line)
        behind = [node.name for node in nodes if sightings.missing(node.name, expected)]
        if not behind:
            return
        progress.show(f"gossip: {len(nodes) - len(behind)}/{len(nodes)} nodes know everything")
        await trio.sleep(POLL_SECONDS)


def _laggards(sightings: Sightings, nodes: list[BenchNode], expected: list[MessageKey]) -> str:
    """Which nodes lack how many messages of which kinds (the five furthest behind)."""
    lacking: list[tuple[int, str, str]] = []
    for node in nodes:
        seen = sightings.first_seen
        kinds = Counter(key[0] for key in expected if node.name not in seen.get(key, {}))
        if kinds:
            detail = " ".join(f"{kind}:{count}" for kind, count in sorted(kinds.items()))
            lacking.append((sum(kinds.values()), node.name, detail))
    lacking.sort(reverse=True)
    listed = ", ".join(f"{name} lacks {detail}" for _, name, detail in lacking[:5])
    return f"{len(lacking)} of {len(nodes)} nodes behind: {listed}"


async def _check_graphs(nodes: list[BenchNode], channel_ids: set[str]) -> None:
    """What the logs said, as each node's `graph` RPC shows it."""
    for node in nodes:
        graph = await node.call("graph")
        known = {
            c["channel_id"]
            for c in graph["channels"]
            if c["node1_policy"] is not None and c["node2_policy"] is not None
        }
        if not channel_ids <= known:
            raise UserError(
                f"{node.name}'s graph lacks {len(channel_ids - known)} channels or updates "
                "its log says it stored"
            )


async def _traffic(nodes: list[BenchNode]) -> dict[str, list[int]]:
    """Per node, the bytes and messages it sent to its peers and received from them."""
    totals: dict[str, list[int]] = {field: [] for field in ("bytes_sent", "messages_sent")}
    totals["bytes_received"] = []
    for node in nodes:
        peers = await node.call("peers")
        for field, values in totals.items():
            values.append(sum(int(peer.get(field) or 0) for peer in peers))
    return totals


def report(
    config: GossipBenchConfig,
    opened: list[OpenedChannel],
    sightings: Sightings,
    names: list[str],
    extra: dict[str, Any],
) -> dict[str, Any]:
    """The result document from what the run saw, once every node knows every channel and
    update (the figures' derivation, apart from the IO)."""
    graph_keys, node_keys = expected_messages(opened)
    last_usable = max(channel.usable_at for channel in opened)
    done = [sightings.complete_at(name, graph_keys) for name in names]
    if None in done:
        raise UserError("not every node knows every channel and update yet")
    converged = max(at for at in done if at is not None)
    with_nodes = [sightings.complete_at(name, graph_keys + node_keys) for name in names]
    complete = [at for at in with_nodes if at is not None]
    origins = [min(sightings.first_seen[key].values()) for key in graph_keys]
    return {
        "nodes": config.nodes,
        "channels": len(opened),
        "seed": config.seed,
        # The network may know the last channel before its opener's answer reaches us: 0.
        "seconds": round(max(converged - last_usable, 0.0), 3),
        "seconds_from_last_origin": round(converged - max(origins), 3),
        "seconds_with_node_announcements": (
            round(max(max(complete) - last_usable, 0.0), 3) if len(complete) == len(names) else None
        ),
        "opening_seconds": round(last_usable - min(c.usable_at for c in opened), 3),
        "channels_and_updates": propagation(sightings, graph_keys, names),
        "node_announcements": propagation(sightings, node_keys, names),
        **extra,
    }


async def run_gossip_bench(
    config: GossipBenchConfig, progress: ProgressLine | None = None
) -> dict[str, Any]:
    progress = progress or ProgressLine(enabled=False)
    pairs = ring_with_chords(config.nodes, config.channels, config.seed)
    load_at_start = load_average()
    sightings = Sightings()
    nodes: list[BenchNode] = []
    stage = "starting"
    stages: dict[str, float] = {}
    began = time.monotonic()
    with trio.move_on_after(config.deadline) as deadline:
        async with bench_network("p2pchan-bench-gossip-", config.workdir) as network:
            nodes = await _start(network, config, progress)
            memory_at_start = [resident_mb(node.pid) for node in nodes]
            stages["start"] = time.monotonic() - began
            stage = "connecting"
            await _connect_all(network, nodes, pairs, progress)
            stages["connect"] = time.monotonic() - began - sum(stages.values())
            stage = "opening channels"
            opened = await _open_all(network, nodes, pairs, progress)
            stages["fund_and_open"] = time.monotonic() - began - sum(stages.values())
            stage = "waiting for gossip"
            graph_keys, node_keys = expected_messages(opened)
            await _converge(nodes, sightings, graph_keys + node_keys, progress)
            stage = "reading the nodes' graphs and counters"
            await _check_graphs(nodes, {channel.channel_id for channel in opened})
            traffic = await _traffic(nodes)
            memory = [resident_mb(node.pid) for node in nodes]
            cpu = cpu_snapshot(network.children)
            progress.show("stopping")
    if deadline.cancelled_caught:
        if stage == "waiting for gossip":
            stage += f": {_laggards(sightings, nodes, graph_keys + node_keys)}"
        raise UserError(f"the gossip benchmark ran out of its {config.deadline:g} s ({stage})")
    return report(
        config,
        opened,
        sightings,
        [node.name for node in nodes],
        {
            "bytes_sent_per_node": distribution(traffic["bytes_sent"], 0),
            "bytes_received_per_node": distribution(traffic["bytes_received"], 0),
            "messages_sent_per_node": distribution(traffic["messages_sent"], 0),
            "resident_mb_per_node": distribution(_known(memory), 1),
            "resident_mb_per_node_at_start": distribution(_known(memory_at_start), 1),
            "cpu_s_per_node": distribution(_known([cpu.get(node.name) for node in nodes]), 2),
            "stage_seconds": {name: round(seconds, 1) for name, seconds in stages.items()},
            "load_average_1m_at_start": load_at_start,
            "machine": machine_description(),
        },
    )


def _known(values: list[float | None]) -> list[float]:
    return [value for value in values if value is not None]
