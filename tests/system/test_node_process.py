"""Channel nodes as real processes: the CLI contract, reconnection after kill -9, hostile
connections, and a standard Noise XK implementation talking to a node."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import trio
from noise.connection import Keypair, NoiseConnection

from p2pchan.crypto.keys import KEY_FILE_NAME, Identity, write_key_file
from p2pchan.wire.gossip_messages import GossipFilter
from p2pchan.wire.peer_messages import PEER_MESSAGES, Init, Ping, Pong
from tests.conftest import ProcessRegistry
from tests.system.support import Network, log_events, p2pchan, wait_for_log_event

pytestmark = pytest.mark.slow
DEADLINE = 120
FAST_RECONNECT = ("--reconnect-max", "1")


async def test_two_nodes_connect_and_reconnect_after_kill_9_of_either(
    processes: ProcessRegistry, tmp_path: Path
) -> None:
    with trio.fail_after(DEADLINE):
        net = Network(processes, tmp_path)
        await net.start_l1()
        alice_id, bob_id = await net.init_node("alice"), await net.init_node("bob")
        alice = await net.start_node("alice", *FAST_RECONNECT)
        bob = await net.start_node("bob", *FAST_RECONNECT)
        assert set(bob.ready) == {"node_id", "host", "port", "rpc", "pid"}
        bob_port = bob.ready["port"]

        connected = await p2pchan(
            "--datadir",
            str(tmp_path / "alice"),
            "connect",
            f"{bob_id}@127.0.0.1:{bob_port}",
            "--json",
        )
        assert connected.json()["connected"] is True
        alice_peers = (
            await p2pchan("peers", "--datadir", str(tmp_path / "alice"), "--json")
        ).json()
        bob_peers = (await p2pchan("peers", "--datadir", str(tmp_path / "bob"), "--json")).json()
        assert [(p["node_id"], p["connected"]) for p in alice_peers] == [(bob_id, True)]
        assert [(p["node_id"], p["connected"]) for p in bob_peers] == [(alice_id, True)]
        assert set(alice_peers[0]) >= {"node_id", "host", "port", "connected"}
        info = (await p2pchan("info", "--datadir", str(tmp_path / "alice"), "--json")).json()
        assert set(info) >= {  # the contract; later fields may be added
            "node_id",
            "alias",
            "host",
            "port",
            "block_height",
            "l1_balance",
            "peers",
            "channels",
        }
        assert (info["node_id"], info["peers"], info["l1_balance"]) == (alice_id, 1, 0)
        assert info["uri"] == f"{alice_id}@{info['host']}:{info['port']}"
        assert (info["channels"], info["channel_states"]) == (0, {})

        # kill -9 Bob, restart him on the same port: Alice redials by herself.
        bob.kill()
        await bob.wait_exit()
        bob = await net.start_node("bob", "--listen", f"127.0.0.1:{bob_port}", *FAST_RECONNECT)
        await net.wait_connected("alice", bob_id)
        await net.wait_connected("bob", alice_id)

        # kill -9 Alice: after her restart she redials the peer she remembers.
        alice.kill()
        await alice.wait_exit()
        alice = await net.start_node("alice", *FAST_RECONNECT)
        await net.wait_connected("alice", bob_id)
        await net.wait_connected("bob", alice_id)

        # A clean stop tells the peer why.
        await alice.stop()
        await wait_for_log_event(
            bob, lambda e: e["event"] == "peer_session_ended" and "goodbye" in e["reason"]
        )


def noise_initiator(identity: Identity, responder_id: bytes) -> NoiseConnection:
    """A standard Noise XK initiator (package `noiseprotocol`), keys converted as p2pchan does."""
    from p2pchan.crypto.keys import x25519_public_key

    noise = NoiseConnection.from_name(b"Noise_XK_25519_ChaChaPoly_SHA256")
    noise.set_as_initiator()
    noise.set_prologue(b"p2pchan/1")
    noise.set_keypair_from_private_bytes(Keypair.STATIC, identity.x25519_private_key())
    noise.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, x25519_public_key(responder_id))
    noise.start_handshake()
    return noise


async def receive_exactly(stream: trio.SocketStream, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = await stream.receive_some(size - len(data))
        assert chunk, "the node closed the connection"
        data += chunk
    return data


async def receive_frame(stream: trio.SocketStream, noise: NoiseConnection) -> bytes:
    """One transport frame: the encrypted 2-byte length (16-byte tag), then the body."""
    length = noise.decrypt(await receive_exactly(stream, 2 + 16))
    return bytes(noise.decrypt(await receive_exactly(stream, int.from_bytes(length, "big") + 16)))


async def test_a_standard_noise_xk_client_talks_to_a_node(
    processes: ProcessRegistry, tmp_path: Path
) -> None:
    with trio.fail_after(DEADLINE):
        net = Network(processes, tmp_path)
        await net.start_l1()
        node_id = bytes.fromhex(await net.init_node("node"))
        node = await net.start_node("node")
        chain_id = bytes.fromhex(json.loads((tmp_path / "l1" / "l1.json").read_text())["chain_id"])
        client = Identity.generate()
        noise = noise_initiator(client, node_id)
        stream = await trio.open_tcp_stream("127.0.0.1", node.ready["port"])
        async with stream:
            await stream.send_all(noise.write_message(b""))
            noise.read_message(await receive_exactly(stream, 48))
            await stream.send_all(noise.write_message(client.node_id))
            assert noise.handshake_finished

            # The node sends its init at once.
            init = PEER_MESSAGES.decode(await receive_frame(stream, noise))
            assert isinstance(init, Init) and init.chain_id == chain_id

            def frame(message: Any) -> bytes:
                body = PEER_MESSAGES.encode(message)
                return noise.encrypt(len(body).to_bytes(2, "big")) + noise.encrypt(body)

            await stream.send_all(frame(Init(1, chain_id, b"")) + frame(Ping(7, b"")))
            # Once the session starts, the node asks for the gossip it lacks; then it pongs.
            first = PEER_MESSAGES.decode(await receive_frame(stream, noise))
            assert isinstance(first, GossipFilter)
            assert PEER_MESSAGES.decode(await receive_frame(stream, noise)) == Pong(bytes(7))
            peers = await net.rpc("node", "peers")
            assert [p["node_id"] for p in peers if p["connected"]] == [client.node_id.hex()]


async def test_hostile_connections_end_with_a_reason_and_the_node_serves_on(
    processes: ProcessRegistry, tmp_path: Path
) -> None:
    with trio.fail_after(DEADLINE):
        net = Network(processes, tmp_path)
        await net.start_l1()
        node_id = bytes.fromhex(await net.init_node("node"))
        node = await net.start_node("node")
        port = node.ready["port"]

        async def send_and_expect_close(data: bytes) -> None:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                await stream.send_all(data)
                with trio.move_on_after(0.2):
                    await stream.send_eof()
                while await stream.receive_some(4096):
                    pass  # the node may answer act one; then it closes

        wrong_key = noise_initiator(Identity.generate(), Identity.generate().node_id)
        flipped = noise_initiator(Identity.generate(), node_id)
        act_one = bytearray(flipped.write_message(b""))
        act_one[40] ^= 1
        await send_and_expect_close(os.urandom(48))  # garbage before the handshake
        await send_and_expect_close(wrong_key.write_message(b""))  # for another responder key
        await send_and_expect_close(bytes(act_one))  # a flipped bit in act one
        await send_and_expect_close(
            noise_initiator(Identity.generate(), node_id).write_message(b"")[:20]
        )

        failures = [e for e in log_events(node) if e["event"] == "peer_handshake_failed"]
        assert len(failures) == 4
        assert all(e["reason"] for e in failures)
        assert any("closed during the handshake" in e["reason"] for e in failures)
        info = await net.rpc("node", "info")  # still serving
        assert info["node_id"] == node_id.hex()


async def test_a_node_refuses_a_key_file_others_can_read(tmp_path: Path) -> None:
    with trio.fail_after(DEADLINE):
        datadir = tmp_path / "node"
        datadir.mkdir()
        write_key_file(datadir / KEY_FILE_NAME, Identity.generate())
        (datadir / KEY_FILE_NAME).chmod(0o644)
        result = await p2pchan(
            "node",
            "start",
            "--datadir",
            str(datadir),
            "--l1",
            "127.0.0.1:9",
            "--listen",
            "127.0.0.1:0",
        )
        assert result.returncode == 1
        assert "chmod 600" in result.stderr and result.stderr.count("\n") == 1


async def test_a_node_of_another_chain_is_refused_at_init(
    processes: ProcessRegistry, tmp_path: Path
) -> None:
    with trio.fail_after(DEADLINE):
        ours = Network(processes, tmp_path / "ours")
        theirs = Network(processes, tmp_path / "theirs")
        await ours.start_l1()
        await theirs.start_l1()
        ours_id = await ours.init_node("node")
        await theirs.init_node("stranger")
        node = await ours.start_node("node")
        await theirs.start_node("stranger")
        connect = theirs.rpc(
            "stranger",
            "connect",
            {"node_id": ours_id, "host": "127.0.0.1", "port": node.ready["port"]},
        )
        with pytest.raises(Exception, match="another chain"):
            await connect
        await wait_for_log_event(
            node, lambda e: e["event"] == "peer_handshake_failed" and "another chain" in e["reason"]
        )
