"""Peer managers over loopback TCP in one trio run: connecting, init, misbehaviour and bans,
unknown messages, redial after a crash, crossed dials, limits, and what the peer code logs.
(Timers played out in virtual time, on an in-memory network: `test_peer_timing.py`.)"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import pytest
import trio
import trio.testing

from p2pchan.crypto.keys import Identity
from p2pchan.errors import UserError
from p2pchan.net import misbehaviour
from p2pchan.net.peer import Direction
from p2pchan.net.peers import PeerInfo
from p2pchan.storage.peers import RememberedPeer, load_peers
from p2pchan.types import ChainId
from p2pchan.wire.codec import UnknownMessage, pack
from p2pchan.wire.fields import U64
from p2pchan.wire.peer_messages import PEER_MESSAGES, Goodbye, PeerMessage
from p2pchan.wire.records import wire
from tests.net.peer_helpers import (
    FAST,
    HOST,
    QUIET,
    Network,
    Peer,
    RawPeer,
    capture,
    wait_until_at_any,
)

DEADLINE = 10
MALFORMED_PING = pack([18, "x"])  # a ping with one field, and that one of the wrong type
NOTE_TYPE = 1_000_001
"""A test-only message type, registered for the tests that use `notes` (see there)."""


@dataclass(frozen=True, slots=True)
class Note(PeerMessage):
    """Stands in for the channel messages the session passes on to the node's handler."""

    index: int = wire(U64)


@pytest.fixture
def notes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register `Note` in the real peer registry for this test only. Real ids come from
    `PeerType`, which has nothing the session hands to the handler yet."""
    monkeypatch.setitem(PEER_MESSAGES._by_id, NOTE_TYPE, Note)
    monkeypatch.setattr(Note, "TYPE_ID", NOTE_TYPE, raising=False)


# -- connecting -------------------------------------------------------------------------------


async def test_connect_lists_each_other_and_remembers_the_peer(network: Network) -> None:
    with trio.fail_after(DEADLINE):
        alice, bob = await network.start("alice"), await network.start("bob")

        info = await alice.connect(bob)

        assert info == PeerInfo(bob.node_id, HOST, bob.port, True, "outbound", True)
        assert info.to_json() == {
            "node_id": bob.node_id.hex(),
            "host": HOST,
            "port": bob.port,
            "connected": True,
            "direction": "outbound",
            "remembered": True,
        }
        assert alice.manager.all_peers() == [info]
        session = await bob.manager.wait_connected(alice.node_id)
        assert session.direction is Direction.INBOUND
        [seen_by_bob] = bob.manager.all_peers()
        assert (seen_by_bob.node_id, seen_by_bob.connected) == (alice.node_id, True)
        assert (seen_by_bob.direction, seen_by_bob.remembered) == ("inbound", False)
        stored = alice.manager.database.run_now(load_peers)
        assert stored == [RememberedPeer(bob.node_id, HOST, bob.port)]
        assert await alice.session(bob).ping() >= 0
        assert await session.ping() >= 0


async def test_connect_refuses_ourselves_and_unreachable_or_wrong_peers(network: Network) -> None:
    with trio.fail_after(DEADLINE):
        alice, bob = await network.start("alice"), await network.start("bob")
        with pytest.raises(UserError, match="ourselves"):
            await alice.manager.connect(alice.node_id, HOST, bob.port)
        impostor = Identity.generate()  # bob answers at that address, but not with that key
        # The one line says which id was tried and what probably went wrong.
        tried = f"{impostor.node_id.hex()[:8]}…{impostor.node_id.hex()[-6:]}@{HOST}:{bob.port}"
        with pytest.raises(UserError, match=f"{tried}: .*a wrong node id"):
            await alice.manager.connect(impostor.node_id, HOST, bob.port)
        listener = trio.socket.socket()
        await listener.bind((HOST, 0))
        closed_port = listener.getsockname()[1]
        listener.close()  # nothing listens there any more
        with pytest.raises(UserError, match="cannot connect"):
            await alice.manager.connect(bob.node_id, HOST, closed_port)
        assert alice.manager.all_peers() == []
        assert alice.manager.database.run_now(load_peers) == []


async def test_messages_reach_the_handler_in_order_both_ways(network: Network, notes: None) -> None:
    with trio.fail_after(DEADLINE):
        alice, bob = await network.start("alice"), await network.start("bob")
        await alice.connect(bob)
        to_alice = await bob.manager.wait_connected(alice.node_id)
        count = 3_000
        for index in range(count):
            await alice.session(bob).send(Note(index))
            await to_alice.send(Note(count - index))
        await bob.inbox.wait_for(count)
        await alice.inbox.wait_for(count)
        assert bob.received == [(alice.node_id, Note(index)) for index in range(count)]
        assert alice.received == [(bob.node_id, Note(count - index)) for index in range(count)]


async def test_init_for_another_chain_is_refused_and_the_listener_keeps_serving(
    network: Network,
) -> None:
    with trio.fail_after(DEADLINE):
        bob = await network.start("bob")
        stranger = await network.start("stranger", chain_id=ChainId(os.urandom(32)))
        with capture() as logs:
            with pytest.raises(UserError, match="another chain"):
                await stranger.connect(bob)
            await logs.wait_for("peer_handshake_failed")
        [failed] = logs.events("peer_handshake_failed")
        assert "another chain" in failed["reason"]
        assert stranger.manager.all_peers() == []
        assert bob.manager.sessions == {}

        alice = await network.start("alice")
        assert (await alice.connect(bob)).connected
        assert await alice.session(bob).ping() >= 0


# -- misbehaviour -----------------------------------------------------------------------------


async def test_malformed_messages_are_scored_and_end_in_a_ban(network: Network) -> None:
    with trio.fail_after(DEADLINE):
        config = dataclasses.replace(QUIET, ban_threshold=100, ban_seconds=600)
        bob = await network.start("bob", config)
        identity = Identity.generate()
        with capture() as logs:
            mallory = await RawPeer.connect(bob, identity)
            session = await bob.manager.wait_connected(mallory.node_id)
            await mallory.send_raw(*[MALFORMED_PING] * 4)  # 80 points: not yet banned
            assert (await mallory.ping(7)).padding == bytes(7)
            faults = logs.events("peer_misbehaved")
            assert [(f["peer"], f["points"]) for f in faults] == [(identity.node_id.hex(), 20)] * 4
            assert all("malformed" in fault["reason"] for fault in faults)
            assert not session.closed.is_set()

            await mallory.send_raw(MALFORMED_PING, MALFORMED_PING)  # past 100 points: banned
            await mallory.wait_closed()
            await session.closed.wait()
            assert "banned" in session.close_reason
            assert bob.manager.misbehaviour.is_banned(identity.node_id, trio.current_time())

            again = await RawPeer.connect(bob, identity)  # the handshake itself succeeds ...
            assert await again.wait_closed() == []  # ... then bob hangs up
            await logs.wait_for("peer_refused")
        [refused] = logs.events("peer_refused")
        assert (refused["peer"], refused["reason"]) == (identity.node_id.hex(), "banned")
        assert bob.manager.sessions == {}


async def test_faults_an_honest_peer_commits_by_timing_are_scored_only_beyond_a_budget(
    network: Network,
) -> None:
    """Retryable refusals: a few a block are normal; a flood of them is spam, scored."""
    with trio.fail_after(DEADLINE):
        bob = await network.start("bob", QUIET)
        mallory = await RawPeer.connect(bob)
        session = await bob.manager.wait_connected(mallory.node_id)
        with capture() as logs:
            for _ in range(misbehaviour.BUDGET_PER_MINUTE):
                session.fault(5, "refused update: lock_too_long", budgeted=True)
            assert logs.events("peer_misbehaved") == []
            session.fault(5, "refused update: lock_too_long", budgeted=True)
            assert [entry["points"] for entry in logs.events("peer_misbehaved")] == [5]
        score = bob.manager.misbehaviour.score(mallory.node_id, trio.current_time())
        assert score == pytest.approx(5, abs=0.5)


async def test_unknown_even_message_ends_the_session_at_once(network: Network) -> None:
    with trio.fail_after(DEADLINE):
        bob = await network.start("bob", QUIET)
        newer = await RawPeer.connect(bob)
        session = await bob.manager.wait_connected(newer.node_id)
        await newer.send_raw(pack([1_000_000, "you must understand this"]))
        assert await newer.wait_closed() == []
        await session.closed.wait()
        assert "unknown even" in session.close_reason


async def test_unknown_odd_message_is_skipped_and_the_session_goes_on(network: Network) -> None:
    with trio.fail_after(DEADLINE):
        bob = await network.start("bob", QUIET)
        newer = await RawPeer.connect(bob)
        session = await bob.manager.wait_connected(newer.node_id)
        with capture() as logs:
            await newer.send_raw(pack([1_000_003, "optional", [1, 2]]), pack([999]))
            assert (await newer.ping(3)).padding == bytes(3)
        assert not session.closed.is_set()
        assert logs.events("peer_misbehaved") == []
        assert bob.received == []  # nothing of it reached the node's handler
        assert isinstance(PEER_MESSAGES.decode(pack([999])), UnknownMessage)


# -- staying connected ------------------------------------------------------------------------


async def test_a_crashed_peer_restarted_on_the_same_port_is_redialled(network: Network) -> None:
    with trio.fail_after(DEADLINE):
        alice, bob = await network.start("alice"), await network.start("bob")
        await alice.connect(bob)
        first = alice.session(bob)

        await bob.crash()
        await first.closed.wait()
        await alice.manager.wait_until(lambda: not alice.manager.info(bob.node_id).connected)
        bob_again = await network.start("bob", identity=bob.identity, port=bob.port)

        session = await alice.manager.wait_connected(bob.node_id)
        assert session is not first
        assert session.direction is Direction.OUTBOUND
        inbound = await bob_again.manager.wait_connected(alice.node_id)
        assert inbound.direction is Direction.INBOUND
        assert await session.ping() >= 0


@pytest.mark.parametrize("round_", range(4))
async def test_crossed_dials_leave_one_shared_connection(network: Network, round_: int) -> None:
    """Both dial at once; whichever node id is smaller, both ends keep the same connection."""
    with trio.fail_after(DEADLINE):
        alice, bob = await network.start("alice"), await network.start("bob")
        results: dict[str, PeerInfo] = {}

        async def dial(source: Peer, target: Peer) -> None:
            results[source.name] = await source.connect(target)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(dial, alice, bob)
            nursery.start_soon(dial, bob, alice)
        assert results["alice"].connected and results["bob"].connected

        def same_connection() -> bool:
            ours = alice.manager.sessions.get(bob.node_id)
            theirs = bob.manager.sessions.get(alice.node_id)
            if ours is None or theirs is None or ours.closed.is_set() or theirs.closed.is_set():
                return False
            ours_socket = ours.secure.stream.socket  # type: ignore[attr-defined]
            theirs_socket = theirs.secure.stream.socket  # type: ignore[attr-defined]
            return bool(ours_socket.getsockname() == theirs_socket.getpeername())

        await wait_until_at_any(same_connection, alice, bob)
        ours, theirs = alice.session(bob), bob.session(alice)
        assert {ours.direction, theirs.direction} == {Direction.INBOUND, Direction.OUTBOUND}
        smaller = alice if alice.node_id < bob.node_id else bob
        assert smaller.session(bob if smaller is alice else alice).direction is Direction.OUTBOUND
        assert await ours.ping() >= 0 and await theirs.ping() >= 0
        assert alice.session(bob) is ours and bob.session(alice) is theirs
        assert len(alice.manager.sessions) == len(bob.manager.sessions) == 1


# -- limits -----------------------------------------------------------------------------------


async def test_max_peers_refuses_the_extra_peer_and_keeps_the_others(network: Network) -> None:
    with trio.fail_after(DEADLINE):
        bob = await network.start("bob", dataclasses.replace(FAST, max_peers=1))
        alice, carol = await network.start("alice"), await network.start("carol")
        await alice.connect(bob)
        with capture() as logs:
            with pytest.raises(UserError, match="cannot connect"):
                await carol.connect(bob)
            await logs.wait_for("peer_handshake_failed")
        [refused] = logs.events("peer_handshake_failed")
        assert "limit of 1 peers" in refused["reason"]
        assert list(bob.manager.sessions) == [alice.node_id]
        assert await alice.session(bob).ping() >= 0
        assert carol.manager.all_peers() == []


async def test_max_pending_handshakes_refuses_the_extra_handshake(network: Network) -> None:
    with trio.fail_after(DEADLINE):
        config = dataclasses.replace(FAST, max_pending_handshakes=1, handshake_timeout=8)
        bob = await network.start("bob", config)
        alice, carol = await network.start("alice"), await network.start("carol")
        await alice.connect(bob)
        with capture() as logs:
            silent = await trio.open_tcp_stream(HOST, bob.port)  # holds the only handshake slot
            await bob.manager.wait_until(lambda: bob.manager.pending_handshakes == 1)
            with pytest.raises(UserError, match="cannot connect"):
                await carol.connect(bob)
        [refused] = logs.events("peer_refused")
        assert refused["reason"] == "too many handshakes"
        assert list(bob.manager.sessions) == [alice.node_id]
        assert await alice.session(bob).ping() >= 0

        await silent.aclose()  # the slot frees up, and carol gets in
        await bob.manager.wait_until(lambda: bob.manager.pending_handshakes == 0)
        assert (await carol.connect(bob)).connected


# -- logs -------------------------------------------------------------------------------------

CONNECTION_EVENTS = {"peers_listening", "peer_handshake_failed", "peer_refused"}
"""Lines about a connection whose peer is not known (yet): these carry `remote` instead."""


async def test_session_log_lines_name_the_peer_and_never_a_secret(
    network: Network, notes: None
) -> None:
    network.log_messages = True
    with trio.fail_after(DEADLINE):
        with capture() as logs:
            alice, bob = await network.start("alice"), await network.start("bob", QUIET)
            await alice.connect(bob)
            await alice.session(bob).send(Note(1))
            await bob.inbox.wait_for(1)
            mallory = await RawPeer.connect(bob)
            await mallory.send_raw(MALFORMED_PING)
            assert (await mallory.ping(1)).padding == b"\x00"
            await mallory.send_raw(b"\xc1")  # not msgpack at all
            await mallory.send_raw(PEER_MESSAGES.encode(Goodbye("bye")))
            await mallory.wait_closed()
            stranger = await network.start("stranger", chain_id=ChainId(os.urandom(32)))
            with pytest.raises(UserError):
                await stranger.connect(bob)
            first = alice.session(bob)
            await bob.crash()
            await first.closed.wait()
            await logs.wait_for("peer_redial_failed")
            await alice.manager.disconnect(bob.node_id)

        hexes = {peer.node_id.hex() for peer in (alice, bob, mallory, stranger)}
        names = {entry["event"] for entry in logs}
        assert {"peer_connected", "peer_misbehaved", "peer_session_ended"} <= names
        assert {"test_message_handled", "peer_redial_failed"} <= names
        for entry in logs:
            if entry["event"] not in CONNECTION_EVENTS:
                assert entry.get("peer") in hexes, entry
        [handled] = logs.events("test_message_handled")
        assert handled["peer"] == alice.node_id.hex()
        assert {e["peer"] for e in logs.events("peer_misbehaved")} == {mallory.node_id.hex()}
        assert {e["peer"] for e in logs.events("peer_redial_failed")} == {bob.node_id.hex()}

        secrets = []
        for identity in (alice.identity, bob.identity, mallory.identity, stranger.identity):
            for secret in (identity.seed(), identity.x25519_private_key()):
                secrets += [secret.hex(), repr(secret)]
        rendered = repr(logs)
        assert not [secret for secret in secrets if secret in rendered]
