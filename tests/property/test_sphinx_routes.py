"""Hypothesis: onions over random routes, payloads, session keys and secrethashes.

For any route of 1 to 20 distinct nodes whose payloads fit the routing info, every hop reads
exactly its payload, sees a full-size packet, agrees with the payer on its shared secret, and a
failure made by any hop and wrapped by the hops before it reaches the payer naming that hop.
A packet peeled with the wrong secrethash is always refused.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pchan.crypto.keys import Identity
from p2pchan.crypto.sphinx import (
    MAC_SIZE,
    MAX_HOPS,
    MAX_PAYLOAD_SIZE,
    ONION_SIZE,
    ROUTING_INFO_SIZE,
    OnionError,
    OnionHop,
    build_onion,
    peel_onion,
)
from p2pchan.crypto.sphinx_failure import (
    MAX_FAILURE_MESSAGE_SIZE,
    failure_packet,
    read_failure,
    wrap_failure,
)

NODES = [Identity(hashlib.sha256(b"node %d" % index).digest()) for index in range(32)]


@st.composite
def routes(draw: st.DrawFn) -> list[tuple[Identity, bytes]]:
    indices = draw(
        st.lists(st.integers(0, len(NODES) - 1), min_size=1, max_size=MAX_HOPS, unique=True)
    )
    budget = ROUTING_INFO_SIZE + MAC_SIZE - len(indices) * (1 + MAC_SIZE)  # for all payloads
    hops = []
    for index in indices:
        payload = draw(st.binary(max_size=min(MAX_PAYLOAD_SIZE, budget)))
        budget -= len(payload)
        hops.append((NODES[index], payload))
    return hops


@settings(max_examples=200, deadline=None)
@given(
    route=routes(),
    session_key=st.binary(min_size=32, max_size=32),
    secrethash=st.binary(min_size=32, max_size=32),
    failing=st.integers(0, MAX_HOPS - 1),
    message=st.binary(max_size=MAX_FAILURE_MESSAGE_SIZE),
)
def test_any_route_round_trips_and_returns_its_failures(
    route: list[tuple[Identity, bytes]],
    session_key: bytes,
    secrethash: bytes,
    failing: int,
    message: bytes,
) -> None:
    onion = build_onion(
        [OnionHop(node.node_id, payload) for node, payload in route], session_key, secrethash
    )
    packet: bytes | None = onion.packet
    for index, (node, payload) in enumerate(route):
        assert packet is not None and len(packet) == ONION_SIZE
        if index == 0:
            with pytest.raises(OnionError):
                peel_onion(packet, node.x25519_private_key(), secrethash[::-1] + b"!")
        layer = peel_onion(packet, node.x25519_private_key(), secrethash)
        assert layer.payload == payload
        assert layer.shared_secret == onion.shared_secrets[index]
        packet = layer.next_packet
    assert packet is None

    failing %= len(route)
    failure = failure_packet(onion.shared_secrets[failing], message)
    for index in reversed(range(failing)):
        failure = wrap_failure(onion.shared_secrets[index], failure)
    assert read_failure(onion.shared_secrets, failure) == (failing, message)
