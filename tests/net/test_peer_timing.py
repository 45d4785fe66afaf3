"""Peer timers in virtual time: peer managers on an in-memory network under trio's autojump
clock, with the timers a node runs with (`PeerConfig()`): the keep-alive dropping a silent peer
and keeping a live one, the handshake timeout, redial backoff (and its log throttle), and redials
that must stop on disconnect.

Nothing here does real IO, so whenever every task waits the clock jumps to the next timer: a
minute of keep-alive takes no real time, and the times asserted are the timers' own. A hang
fails at once too (the clock jumps to the test's deadline).
"""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import structlog
import trio
import trio.testing
from structlog.typing import EventDict, WrappedLogger

from p2pchan.crypto.keys import Identity
from p2pchan.net.peer import Direction
from p2pchan.net.peers import PeerConfig
from p2pchan.storage.peers import RememberedPeer, load_peers
from tests.log_watch import watch_logs
from tests.net.peer_helpers import HOST, MemoryNetwork, Network, RawPeer, capture

DEADLINE = 3600  # virtual seconds
DEFAULTS = PeerConfig()
ROUNDING = 1e-9  # virtual times are float sums: a wait of w may measure w minus a rounding


def loopback(network: Network) -> MemoryNetwork:
    assert network.memory is not None
    return network.memory


def stamped(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """A log processor: the time of trio's clock at which the line was logged."""
    event["at"] = trio.current_time()
    return event


# -- keep-alive -------------------------------------------------------------------------------


async def test_keep_alive_drops_a_silent_peer_and_keeps_a_live_one(
    autojump_clock: trio.testing.MockClock, memory_network: Network
) -> None:
    with trio.fail_after(DEADLINE):
        bob = await memory_network.start("bob", DEFAULTS)
        alice = await memory_network.start("alice", DEFAULTS)
        await alice.connect(bob)
        live = await bob.manager.wait_connected(alice.node_id)
        connected_at = trio.current_time()
        mute = await RawPeer.connect(bob)  # completes the handshake and init, then never reads
        session = await bob.manager.wait_connected(mute.node_id)

        await session.closed.wait()
        silent_for = trio.current_time() - connected_at
        assert silent_for == pytest.approx(DEFAULTS.ping_interval + DEFAULTS.pong_timeout)
        assert "no pong" in session.close_reason
        await bob.manager.wait_until(lambda: mute.node_id not in bob.manager.sessions)
        await mute.aclose()

        # Alice answers every ping: ten minutes on (virtual time), she is still connected.
        await trio.sleep(600)
        assert not live.closed.is_set() and bob.session(alice) is live
        pings = (trio.current_time() - connected_at) // DEFAULTS.ping_interval
        assert live.pings_received >= pings - 1  # one every `ping_interval`, each way
        assert alice.session(bob).pings_received >= pings - 1


async def test_a_silent_connection_is_dropped_after_the_handshake_timeout(
    autojump_clock: trio.testing.MockClock, memory_network: Network
) -> None:
    with trio.fail_after(DEADLINE):
        bob = await memory_network.start("bob", DEFAULTS)
        with capture() as logs:
            silent = await bob.dial(HOST, bob.port)  # connects, never starts the handshake
            opened = trio.current_time()
            assert await silent.receive_some() == b""
            waited = trio.current_time() - opened
        assert waited == pytest.approx(DEFAULTS.handshake_timeout)
        [failed] = logs.events("peer_handshake_failed")
        assert failed["reason"] == "handshake timed out"
        await bob.manager.wait_until(lambda: bob.manager.pending_handshakes == 0)  # slot free
        await silent.aclose()


# -- redialling -------------------------------------------------------------------------------


async def test_a_peer_that_stays_away_is_redialled_with_exponential_backoff(
    autojump_clock: trio.testing.MockClock, memory_network: Network
) -> None:
    """Bob, remembered from an earlier run, is down when Alice starts: she dials again and
    again, each wait doubling (less up to half, jitter) up to `reconnect_max`, says so in the log
    once a minute, and connects within one wait of his return. A session that lasted
    `stable_after` starts the backoff over."""
    memory = loopback(memory_network)
    with trio.fail_after(DEADLINE):
        bob_identity, port = Identity.generate(), memory.free_port()
        remembered = [RememberedPeer(bob_identity.node_id, HOST, port)]
        with watch_logs(structlog.contextvars.merge_contextvars, stamped) as logs:
            alice = await memory_network.start("alice", DEFAULTS, remembered=remembered)
            dials = await memory.wait_for_dials(port, 12)

        gaps = [later - earlier for earlier, later in itertools.pairwise(dials)]
        waits = [min(DEFAULTS.reconnect_initial * 2**k, DEFAULTS.reconnect_max) for k in range(11)]
        assert waits[-1] == DEFAULTS.reconnect_max  # the cap was reached
        for gap, wait in zip(gaps, waits, strict=True):
            assert wait / 2 - ROUNDING <= gap <= wait + ROUNDING, (gaps, waits)

        lines = logs.events("peer_redial_failed")
        assert 2 <= len(lines) < len(dials)  # once a minute, not once a dial
        assert {line["peer"] for line in lines} == {bob_identity.node_id.hex()}
        first, second = lines[0], lines[1]
        assert (first["at"], first["repeated"]) == (dials[0], 0)
        assert first["retry_in"] == DEFAULTS.reconnect_initial
        assert second["at"] - first["at"] >= 60
        held_back = [at for at in dials if first["at"] < at < second["at"]]
        assert second["repeated"] == len(held_back)

        bob = await memory_network.start("bob", DEFAULTS, identity=bob_identity, port=port)
        back_at = trio.current_time()
        session = await alice.manager.wait_connected(bob.node_id)
        assert trio.current_time() - back_at <= DEFAULTS.reconnect_max
        assert session.direction is Direction.OUTBOUND

        await trio.sleep(DEFAULTS.stable_after + 1)  # connected this long (virtual time) ...
        await bob.crash()
        await alice.manager.wait_until(lambda: bob.node_id not in alice.manager.sessions)
        dropped_at = trio.current_time()
        bob = await memory_network.start("bob", DEFAULTS, identity=bob_identity, port=port)
        await alice.manager.wait_connected(bob.node_id)  # ... so the first wait is short again
        assert trio.current_time() - dropped_at <= DEFAULTS.reconnect_initial


async def test_disconnect_forgets_the_peer_and_says_goodbye(
    autojump_clock: trio.testing.MockClock, memory_network: Network
) -> None:
    memory = loopback(memory_network)
    with trio.fail_after(DEADLINE):
        alice = await memory_network.start("alice", DEFAULTS)
        bob = await memory_network.start("bob", DEFAULTS)
        await alice.connect(bob)
        to_alice = await bob.manager.wait_connected(alice.node_id)

        assert await alice.manager.disconnect(bob.node_id) is True

        await to_alice.closed.wait()
        assert "goodbye" in to_alice.close_reason
        assert alice.manager.all_peers() == []
        assert alice.manager.database.run_now(load_peers) == []
        # No redial: ten of the longest backoffs pass (virtual time) without one.
        with trio.move_on_after(10 * DEFAULTS.reconnect_max):
            await bob.manager.wait_connected(alice.node_id)
            raise AssertionError("alice redialled a peer she disconnected from")
        assert len(memory.dials_to(bob.port)) == 1  # her `connect`, nothing after
        assert await alice.manager.disconnect(bob.node_id) is False


async def test_connect_during_a_redial_backoff_then_disconnect_stops_every_redial(
    autojump_clock: trio.testing.MockClock, memory_network: Network
) -> None:
    """A second `connect` to a remembered peer replaces its redialler rather than adding one."""
    memory = loopback(memory_network)
    with trio.fail_after(DEADLINE):
        backoff = 5.0
        config = dataclasses.replace(DEFAULTS, reconnect_initial=backoff, reconnect_max=backoff)
        alice = await memory_network.start("alice", config)
        bob = await memory_network.start("bob", DEFAULTS)
        await alice.connect(bob)
        first = alice.session(bob)
        await bob.crash()
        await first.closed.wait()
        await alice.manager.wait_until(lambda: not alice.manager.info(bob.node_id).connected)
        bob_again = await memory_network.start(
            "bob", DEFAULTS, identity=bob.identity, port=bob.port
        )

        assert len(memory.dials_to(bob.port)) == 1  # alice's redial is still backing off
        assert (await alice.connect(bob)).connected
        inbound = await bob_again.manager.wait_connected(alice.node_id)
        assert await alice.manager.disconnect(bob.node_id) is True
        await inbound.closed.wait()
        assert "goodbye" in inbound.close_reason
        # Any redialler left behind would dial within `backoff` of the drop: ten pass.
        with trio.move_on_after(10 * backoff):
            await bob_again.manager.wait_connected(alice.node_id)
            raise AssertionError("a redialler outlived the disconnect")
        assert len(memory.dials_to(bob.port)) == 2  # the two `connect`s, no redial
        assert alice.manager.all_peers() == []
