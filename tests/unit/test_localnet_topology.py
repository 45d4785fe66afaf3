"""Topologies: every shipped one loads, the random ones are what their generator makes, and
every bad file is refused with one line naming the mistake before anything starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from p2pchan.types import U64_MAX
from p2pchan_cli.localnet.topology import (
    SHIPPED_DIR,
    TopologyError,
    load_topology,
    parse_topology,
    parse_topology_text,
    random_topology,
    shipped_names,
)

GOOD = """
[network]
block_time = 0.5
[[nodes]]
alias = "alice"
funds = 1000
[[nodes]]
alias = "bob"
dev = true
misbehave = ["withhold-ack"]
fee_base = 2
fee_ppm = 300
[[channels]]
a = "alice"
b = "bob"
deposit_a = 600
deposit_b = 400
capacity = 1000
settle_timeout = 30
fees_a = {base = 1, ppm = 100}
"""


def test_a_toml_topology_gives_nodes_channels_fees_and_attack_modes() -> None:
    topology = parse_topology_text(GOOD, "t.toml", toml=True)
    assert [node.alias for node in topology.nodes] == ["alice", "bob"]
    bob = topology.node("bob")
    assert bob.dev and bob.misbehave == ("withhold-ack",)
    assert bob.fees is not None and (bob.fees.base, bob.fees.ppm) == (2, 300)
    [channel] = topology.channels
    assert (channel.capacity, channel.settle_timeout) == (1000, 30)
    assert channel.fees_a is not None and channel.fees_a.ppm == 100 and channel.fees_b is None
    assert topology.neighbours("alice") == ["bob"] and topology.adjacent("bob", "alice")


def test_a_topology_survives_its_json_document() -> None:
    topology = parse_topology_text(GOOD, "t.toml", toml=True)
    again = parse_topology(json.loads(json.dumps(topology.to_document())), "t.toml")
    assert again == topology


def test_every_shipped_topology_loads() -> None:
    assert set(shipped_names()) >= {"line3", "ring5", "hub10", "random30", "random100"}
    sizes = {name: len(load_topology(name).nodes) for name in shipped_names()}
    assert sizes["line3"] == 3 and sizes["ring5"] == 5 and sizes["hub10"] == 10
    assert sizes["random30"] == 30 and sizes["random100"] == 100


@pytest.mark.parametrize(
    ("name", "count", "seed", "extra"), [("random30", 30, 30, 15), ("random100", 100, 100, 50)]
)
def test_the_shipped_random_topologies_are_their_generators_output(
    name: str, count: int, seed: int, extra: int
) -> None:
    shipped = load_topology(name)
    assert shipped == random_topology(name, count, seed, extra_channels=extra)


def test_a_random_topology_is_connected() -> None:
    topology = random_topology("r", 40, 7, extra_channels=10)
    reached = {"n000"}
    frontier = ["n000"]
    while frontier:
        for neighbour in topology.neighbours(frontier.pop()):
            if neighbour not in reached:
                reached.add(neighbour)
                frontier.append(neighbour)
    assert len(reached) == 40 and len(topology.channels) == 49


NODES = '[[nodes]]\nalias = "alice"\n[[nodes]]\nalias = "bob"\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[nodes]\nalias=", "not valid TOML"),
        ("", "needs a non-empty list of nodes"),
        (
            NODES + '[[channels]]\na = "alice"\nb = "zed"\ndeposit_a = 5\n',
            "channel 1: unknown node 'zed'",
        ),
        (
            NODES + '[[channels]]\na = "alice"\nb = "bob"\ndeposit_a = 5\n'
            '[[channels]]\na = "bob"\nb = "alice"\ndeposit_a = 5\n',
            "channel 2 duplicates channel 1",
        ),
        (NODES + '[[channels]]\na = "alice"\nb = "alice"\ndeposit_a = 5\n', "two different nodes"),
        (
            NODES + '[[channels]]\na = "alice"\nb = "bob"\ndeposit_a = -5\n',
            "deposit_a must be a whole number from 1",
        ),
        (
            NODES + f'[[channels]]\na = "alice"\nb = "bob"\ndeposit_a = {U64_MAX}\ndeposit_b = 1\n',
            "add up to more than",
        ),
        (
            NODES + '[[channels]]\na = "alice"\nb = "bob"\ndeposit_a = 5\ncapacity = 6\n',
            "capacity 6 is not",
        ),
        (
            NODES + '[[channels]]\na = "alice"\nb = "bob"\ndeposit_a = 20000000\n',
            "more than its funds",
        ),
        (
            NODES + '[[channels]]\na = "alice"\nb = "bob"\ndeposit_a = 5\nsettle_timeout = 5\n',
            "settle_timeout must be",
        ),
        (
            NODES + '[[channels]]\na = "alice"\nb = "bob"\ndeposit_a = 5\ncolour = "red"\n',
            "unknown key 'colour'",
        ),
        ('[[nodes]]\nalias = "../etc"\n', "alias must be"),
        ('[[nodes]]\nalias = "a"\n[[nodes]]\nalias = "a"\n', "alias 'a' is used twice"),
        ('[[nodes]]\nalias = "a"\nmisbehave = ["withhold-ack"]\n', "misbehave needs dev"),
        (
            '[[nodes]]\nalias = "a"\ndev = true\nmisbehave = ["lie"]\n',
            "unknown misbehave mode 'lie'",
        ),
        ('[[nodes]]\nalias = "a"\nfee_ppm = 2000000\n', "fee ppm must be at most"),
        ('[network]\nblock_time = 0\n[[nodes]]\nalias = "a"\n', "block_time must be"),
        ('[extra]\n[[nodes]]\nalias = "a"\n', "unknown section 'extra'"),
    ],
)
def test_bad_topologies_are_refused_in_one_line(text: str, message: str) -> None:
    with pytest.raises(TopologyError) as refused:
        parse_topology_text(text, "bad.toml", toml=True)
    assert message in str(refused.value)
    assert str(refused.value).startswith("topology bad.toml: ")
    assert "\n" not in str(refused.value)


def test_bad_json_and_unknown_names_and_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match="not valid JSON"):
        parse_topology_text("{nodes: [", "t.json", toml=False)
    with pytest.raises(TopologyError, match="no topology named 'moon'"):
        load_topology("moon")
    with pytest.raises(TopologyError, match="cannot read topology"):
        load_topology(str(tmp_path / "missing.toml"))
    odd = tmp_path / "t.yaml"
    odd.write_text("nodes: []")
    with pytest.raises(TopologyError, match=r"must end in \.toml or \.json"):
        load_topology(str(odd))
    assert SHIPPED_DIR.is_dir()
