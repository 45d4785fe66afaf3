"""Topologies of local networks: parsing and validating a small JSON or TOML file. Pure.

A topology names its nodes (an alias each, the layer-1 funds the faucet grants, `--dev`,
attack modes, default fees) and its channels (the two ends, each side's deposit, the settle
timeout, each direction's fee policy). Everything is checked before anything starts, and every
mistake is one line naming where it is: `channel 3: unknown node 'zed'`. Aliases become
directory names under the network's dir, so they are restricted to `[a-z0-9_-]`.

The two formats hold the same document (TOML for hand-written files, JSON for generated ones):

    [network]                 # optional
    block_time = 0.5          # seconds between layer-1 blocks
    [[nodes]]
    alias = "alice"
    funds = 10_000_000        # layer-1 funds from the dev faucet
    dev = true                # optional; attack modes need it
    misbehave = []            # optional, modes of `node start --misbehave`
    [[channels]]
    a = "alice"               # the opener
    b = "bob"
    deposit_a = 1_000_000
    deposit_b = 500_000       # optional, 0 by default
    settle_timeout = 60       # optional (below 52 it carries only direct payments)
    fees_a = {base = 1, ppm = 100}   # optional: what `a` charges to forward over this channel
"""

from __future__ import annotations

import json
import random
import re
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from p2pchan.core.timing import PAYER_LOCK_TIMEOUT
from p2pchan.errors import UserError
from p2pchan.net.misbehave import Misbehave
from p2pchan.types import U64_MAX

MIN_SETTLE_TIMEOUT = 20  # the contract's minimum, and 2 x the default reveal timeout
SETTLE_MARGIN = 10
"""Blocks of settle window beyond the payer's lock timeout in generated topologies: a payer
routes across hops only over channels covering its lock timeout plus a hop's height slack
(`core.timing.route_lock_timeout`); the extra blocks leave room for nodes that trail further
behind on a loaded machine."""
DEFAULT_SETTLE_TIMEOUT = PAYER_LOCK_TIMEOUT + SETTLE_MARGIN
DEFAULT_BLOCK_TIME = 0.5
DEFAULT_FUNDS = 10_000_000
MAX_NODES = 500
MAX_BLOCK_TIME = 60.0
MAX_FEE_PPM = 1_000_000
_ALIAS = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_NETWORK_KEYS = {"block_time"}
_NODE_KEYS = {"alias", "funds", "dev", "misbehave", "fee_base", "fee_ppm"}
_CHANNEL_KEYS = {
    "a",
    "b",
    "deposit_a",
    "deposit_b",
    "capacity",
    "settle_timeout",
    "fees_a",
    "fees_b",
}


class TopologyError(UserError):
    """A topology that cannot be used: the message names the file and the faulty entry."""


@dataclass(frozen=True)
class FeePolicy:
    base: int
    ppm: int


@dataclass(frozen=True)
class NodeSpec:
    alias: str
    funds: int = DEFAULT_FUNDS
    dev: bool = False
    misbehave: tuple[str, ...] = ()
    fees: FeePolicy | None = None


@dataclass(frozen=True)
class ChannelSpec:
    a: str
    b: str
    deposit_a: int
    deposit_b: int = 0
    settle_timeout: int = DEFAULT_SETTLE_TIMEOUT
    fees_a: FeePolicy | None = None
    fees_b: FeePolicy | None = None

    @property
    def capacity(self) -> int:
        return self.deposit_a + self.deposit_b

    @property
    def ends(self) -> frozenset[str]:
        return frozenset((self.a, self.b))


@dataclass(frozen=True)
class Topology:
    name: str
    nodes: tuple[NodeSpec, ...]
    channels: tuple[ChannelSpec, ...]
    block_time: float = DEFAULT_BLOCK_TIME

    def node(self, alias: str) -> NodeSpec:
        for spec in self.nodes:
            if spec.alias == alias:
                return spec
        raise KeyError(alias)

    def neighbours(self, alias: str) -> list[str]:
        """The aliases `alias` shares a channel with, in topology order."""
        return [c.b if c.a == alias else c.a for c in self.channels if alias in c.ends]

    def adjacent(self, first: str, second: str) -> bool:
        return any(c.ends == {first, second} for c in self.channels)

    def fee_policy(self, channel: ChannelSpec, alias: str) -> FeePolicy | None:
        """What `alias` charges to forward over `channel`: the channel's policy for its side,
        else the node's default; None leaves the node's own default (`node start`)."""
        own = channel.fees_a if alias == channel.a else channel.fees_b
        return own if own is not None else self.node(alias).fees

    def to_document(self) -> dict[str, Any]:
        """The JSON document `parse_topology` reads back into an equal topology."""
        return {
            "network": {"block_time": self.block_time},
            "nodes": [_node_document(node) for node in self.nodes],
            "channels": [_channel_document(channel) for channel in self.channels],
        }


def _node_document(node: NodeSpec) -> dict[str, Any]:
    document: dict[str, Any] = {"alias": node.alias, "funds": node.funds}
    if node.dev:
        document["dev"] = True
    if node.misbehave:
        document["misbehave"] = list(node.misbehave)
    if node.fees is not None:
        document["fee_base"], document["fee_ppm"] = node.fees.base, node.fees.ppm
    return document


def _channel_document(channel: ChannelSpec) -> dict[str, Any]:
    document: dict[str, Any] = {
        "a": channel.a,
        "b": channel.b,
        "deposit_a": channel.deposit_a,
        "deposit_b": channel.deposit_b,
        "settle_timeout": channel.settle_timeout,
    }
    for side, fees in (("fees_a", channel.fees_a), ("fees_b", channel.fees_b)):
        if fees is not None:
            document[side] = {"base": fees.base, "ppm": fees.ppm}
    return document


def parse_topology_text(text: str, name: str, *, toml: bool) -> Topology:
    """A topology from the text of a file called `name` (TOML or JSON)."""
    try:
        document = tomllib.loads(text) if toml else json.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise TopologyError(f"topology {name}: not valid TOML: {error}") from None
    except ValueError as error:
        raise TopologyError(f"topology {name}: not valid JSON: {error}") from None
    return parse_topology(document, name)


def parse_topology(document: Any, name: str) -> Topology:
    """Check a topology document; `TopologyError` names the first mistake."""

    def fail(message: str) -> TopologyError:
        return TopologyError(f"topology {name}: {message}")

    if not isinstance(document, dict):
        raise fail("must be a table (an object) with nodes and channels")
    unknown = set(document) - {"network", "nodes", "channels"}
    if unknown:
        raise fail(f"unknown section {sorted(unknown)[0]!r} (known: network, nodes, channels)")
    network = document.get("network", {})
    if not isinstance(network, dict):
        raise fail("network must be a table")
    _no_unknown_keys(network, _NETWORK_KEYS, "network", fail)
    block_time = network.get("block_time", DEFAULT_BLOCK_TIME)
    if (
        isinstance(block_time, bool)
        or not isinstance(block_time, int | float)
        or not 0 < block_time <= MAX_BLOCK_TIME
    ):
        raise fail(f"network: block_time must be seconds in (0, {MAX_BLOCK_TIME:g}]")
    nodes_doc = document.get("nodes")
    if not isinstance(nodes_doc, list) or not nodes_doc:
        raise fail("needs a non-empty list of nodes")
    if len(nodes_doc) > MAX_NODES:
        raise fail(f"at most {MAX_NODES} nodes, got {len(nodes_doc)}")
    nodes = tuple(_parse_node(entry, f"node {i}", fail) for i, entry in enumerate(nodes_doc, 1))
    aliases: set[str] = set()
    for i, node in enumerate(nodes, 1):
        if node.alias in aliases:
            raise fail(f"node {i}: alias {node.alias!r} is used twice")
        aliases.add(node.alias)
    channels_doc = document.get("channels", [])
    if not isinstance(channels_doc, list):
        raise fail("channels must be a list")
    channels: list[ChannelSpec] = []
    seen: dict[frozenset[str], int] = {}
    for i, entry in enumerate(channels_doc, 1):
        channel = _parse_channel(entry, f"channel {i}", aliases, fail)
        if channel.ends in seen:
            raise fail(
                f"channel {i} duplicates channel {seen[channel.ends]} ({channel.a}-{channel.b}): "
                "two nodes share at most one channel"
            )
        seen[channel.ends] = i
        channels.append(channel)
    topology = Topology(name, nodes, tuple(channels), float(block_time))
    _check_funds(topology, fail)
    return topology


def _no_unknown_keys(entry: dict[str, Any], known: set[str], where: str, fail: Any) -> None:
    unknown = set(entry) - known
    if unknown:
        raise fail(
            f"{where}: unknown key {sorted(unknown)[0]!r} (known: {', '.join(sorted(known))})"
        )


def _amount(entry: dict[str, Any], key: str, where: str, fail: Any, *, minimum: int = 0) -> int:
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= U64_MAX:
        raise fail(
            f"{where}: {key} must be a whole number from {minimum} to {U64_MAX}, got {value!r}"
        )
    return value


def _parse_node(entry: Any, where: str, fail: Any) -> NodeSpec:
    if not isinstance(entry, dict):
        raise fail(f"{where}: must be a table with an alias")
    _no_unknown_keys(entry, _NODE_KEYS, where, fail)
    alias = entry.get("alias")
    if not isinstance(alias, str) or not _ALIAS.fullmatch(alias):
        raise fail(f"{where}: alias must be 1-32 of a-z, 0-9, _ and -, got {alias!r}")
    where = f"node {alias!r}"
    funds = _amount(entry, "funds", where, fail) if "funds" in entry else DEFAULT_FUNDS
    dev = entry.get("dev", False)
    if not isinstance(dev, bool):
        raise fail(f"{where}: dev must be true or false")
    modes = entry.get("misbehave", [])
    if not isinstance(modes, list) or not all(isinstance(mode, str) for mode in modes):
        raise fail(f"{where}: misbehave must be a list of modes")
    known = {mode.value for mode in Misbehave}
    for mode in modes:
        if mode not in known:
            raise fail(
                f"{where}: unknown misbehave mode {mode!r} (known: {', '.join(sorted(known))})"
            )
    if modes and not dev:
        raise fail(f"{where}: misbehave needs dev = true")
    fees = None
    if "fee_base" in entry or "fee_ppm" in entry:
        fees = _fee_policy(
            {"base": entry.get("fee_base", 0), "ppm": entry.get("fee_ppm", 0)}, where, fail
        )
    return NodeSpec(alias, funds, dev, tuple(modes), fees)


def _fee_policy(entry: Any, where: str, fail: Any) -> FeePolicy:
    if not isinstance(entry, dict) or set(entry) - {"base", "ppm"}:
        raise fail(f"{where}: a fee policy is {{base = N, ppm = N}}")
    base = _amount({"fee base": entry.get("base", 0)}, "fee base", where, fail)
    ppm = _amount({"fee ppm": entry.get("ppm", 0)}, "fee ppm", where, fail)
    if ppm > MAX_FEE_PPM:
        raise fail(f"{where}: fee ppm must be at most {MAX_FEE_PPM}, got {ppm}")
    return FeePolicy(base, ppm)


def _parse_channel(entry: Any, where: str, aliases: set[str], fail: Any) -> ChannelSpec:
    if not isinstance(entry, dict):
        raise fail(f"{where}: must be a table with a, b and deposit_a")
    _no_unknown_keys(entry, _CHANNEL_KEYS, where, fail)
    ends = []
    for key in ("a", "b"):
        alias = entry.get(key)
        if not isinstance(alias, str):
            raise fail(f"{where}: {key} must name a node")
        if alias not in aliases:
            raise fail(f"{where}: unknown node {alias!r}")
        ends.append(alias)
    if ends[0] == ends[1]:
        raise fail(f"{where}: a channel needs two different nodes, got {ends[0]!r} twice")
    if "deposit_a" not in entry:
        raise fail(f"{where}: needs deposit_a (what {ends[0]} deposits)")
    deposit_a = _amount(entry, "deposit_a", where, fail, minimum=1)
    deposit_b = _amount(entry, "deposit_b", where, fail) if "deposit_b" in entry else 0
    if deposit_a + deposit_b > U64_MAX:
        raise fail(f"{where}: the deposits add up to more than {U64_MAX}")
    if "capacity" in entry:
        capacity = _amount(entry, "capacity", where, fail, minimum=1)
        if capacity != deposit_a + deposit_b:
            raise fail(
                f"{where}: capacity {capacity} is not deposit_a + deposit_b = "
                f"{deposit_a + deposit_b}"
            )
    settle_timeout = DEFAULT_SETTLE_TIMEOUT
    if "settle_timeout" in entry:
        settle_timeout = _amount(entry, "settle_timeout", where, fail, minimum=MIN_SETTLE_TIMEOUT)
    fees = [
        _fee_policy(entry[key], f"{where}: {key}", fail) if key in entry else None
        for key in ("fees_a", "fees_b")
    ]
    return ChannelSpec(ends[0], ends[1], deposit_a, deposit_b, settle_timeout, fees[0], fees[1])


def _check_funds(topology: Topology, fail: Any) -> None:
    """Every node's funds must cover what it deposits, with nothing over u64."""
    for node in topology.nodes:
        deposits = sum(
            c.deposit_a if c.a == node.alias else c.deposit_b
            for c in topology.channels
            if node.alias in c.ends
        )
        if deposits > node.funds:
            raise fail(
                f"node {node.alias!r}: its deposits add up to {deposits}, more than its funds "
                f"{node.funds}"
            )
    if sum(node.funds for node in topology.nodes) > U64_MAX:
        raise fail(f"the nodes' funds add up to more than {U64_MAX}")


def random_topology(
    name: str, count: int, seed: int, *, extra_channels: int, deposit: int = 1_000_000
) -> Topology:
    """A connected random topology: a random tree over `count` nodes plus `extra_channels`
    random chords, both sides depositing `deposit`, fees varied per direction. Deterministic
    in `seed` (the shipped random30 and random100 are its output)."""
    rng = random.Random(seed)
    aliases = [f"n{i:03d}" for i in range(count)]
    pairs: list[tuple[str, str]] = []
    for i in range(1, count):
        pairs.append((aliases[rng.randrange(i)], aliases[i]))
    present = {frozenset(pair) for pair in pairs}
    while len(pairs) < count - 1 + extra_channels:
        first, second = rng.sample(aliases, 2)
        if frozenset((first, second)) not in present:
            present.add(frozenset((first, second)))
            pairs.append((first, second))
    channels = tuple(
        ChannelSpec(
            a,
            b,
            deposit,
            deposit,
            DEFAULT_SETTLE_TIMEOUT,
            FeePolicy(rng.randrange(0, 3), rng.choice((0, 100, 500, 1000))),
            FeePolicy(rng.randrange(0, 3), rng.choice((0, 100, 500, 1000))),
        )
        for a, b in pairs
    )
    degree = {alias: sum(alias in c.ends for c in channels) for alias in aliases}
    nodes = tuple(NodeSpec(alias, deposit * (degree[alias] + 2)) for alias in aliases)
    return Topology(name, nodes, channels)


SHIPPED_DIR = Path(__file__).resolve().parents[2] / "deploy" / "localnet"


def load_topology(name_or_file: str) -> Topology:
    """A shipped topology by name (`line3`, `ring5`, …, from deploy/localnet/) or a file."""
    path = Path(name_or_file)
    if not path.suffix and "/" not in name_or_file:
        for suffix in (".toml", ".json"):
            candidate = SHIPPED_DIR / f"{name_or_file}{suffix}"
            if candidate.is_file():
                path = candidate
                break
        else:
            raise TopologyError(
                f"no topology named {name_or_file!r} (shipped: {', '.join(shipped_names())}; "
                "or give a .toml or .json file)"
            )
    try:
        text = path.read_text()
    except OSError as error:
        raise TopologyError(f"cannot read topology {path}: {error.strerror}") from None
    if path.suffix not in (".toml", ".json"):
        raise TopologyError(f"topology {path}: the file name must end in .toml or .json")
    topology = parse_topology_text(text, str(path), toml=path.suffix == ".toml")
    return replace(topology, name=path.stem)


def shipped_names() -> list[str]:
    return sorted(p.stem for p in SHIPPED_DIR.glob("*") if p.suffix in (".toml", ".json"))
