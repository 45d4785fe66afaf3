"""Onion payloads and onion failures (`p2pchan.crypto.sphinx`, `sphinx_failure`).

What a multi-hop payment relies on: each hop reads exactly its own payload and nothing else,
every packet is the same size, any tampering or a wrong secrethash stops the packet at the next
hop, a replay gives the hop the same shared secret to refuse it, and a failure reaches the payer
naming the hop that failed.
"""

from __future__ import annotations

import hashlib
import itertools

import nacl.bindings
import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from p2pchan.crypto import sphinx
from p2pchan.crypto.keys import Identity
from p2pchan.crypto.sphinx import (
    FINAL_PAYLOAD_SIZE,
    HOP_PAYLOAD_SIZE,
    MAX_HOPS,
    MAX_PAYLOAD_SIZE,
    ONION_SIZE,
    ROUTING_INFO_SIZE,
    KeyLabel,
    Onion,
    OnionError,
    OnionHop,
    Peeled,
    build_onion,
    derive_key,
    peel_onion,
    shared_secrets,
)
from p2pchan.crypto.sphinx_failure import (
    FAILURE_SIZE,
    MAX_FAILURE_MESSAGE_SIZE,
    MalformedFailure,
    failure_packet,
    read_failure,
    wrap_failure,
)
from p2pchan.errors import LocalProtocolError, RemoteProtocolError

NODES = [Identity(hashlib.sha256(b"hop %d" % index).digest()) for index in range(MAX_HOPS + 1)]
SESSION_KEY = hashlib.sha256(b"session").digest()
OTHER_SESSION_KEY = hashlib.sha256(b"another session").digest()
SECRETHASH = hashlib.sha256(b"secret").digest()


def payloads_for(hops: int) -> list[bytes]:
    """Distinct, recognisable payloads: 56 bytes for forwarding hops, 96 for the last."""
    sizes = [HOP_PAYLOAD_SIZE] * (hops - 1) + [FINAL_PAYLOAD_SIZE]
    return [bytes([0xA0 + index]) * size for index, size in enumerate(sizes)]


def route(payloads: list[bytes]) -> list[OnionHop]:
    return [OnionHop(NODES[index].node_id, payload) for index, payload in enumerate(payloads)]


def walk(onion: Onion, hops: int, associated_data: bytes = SECRETHASH) -> list[Peeled]:
    """Peel the onion hop by hop, as the route's nodes would."""
    peeled = []
    packet: bytes | None = onion.packet
    for index in range(hops):
        assert packet is not None
        layer = peel_onion(packet, NODES[index].x25519_private_key(), associated_data)
        peeled.append(layer)
        packet = layer.next_packet
    return peeled


def flip(data: bytes, index: int, mask: int = 0x01) -> bytes:
    return data[:index] + bytes([data[index] ^ mask]) + data[index + 1 :]


# -- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("hops", [1, 2, 5, 20])
def test_each_hop_reads_exactly_its_payload_and_the_last_knows_it_is_last(hops: int) -> None:
    payloads = payloads_for(hops)
    onion = build_onion(route(payloads), SESSION_KEY, SECRETHASH)
    assert len(onion.packet) == ONION_SIZE
    peeled = walk(onion, hops)
    assert [layer.payload for layer in peeled] == payloads
    assert [layer.next_packet is None for layer in peeled] == [False] * (hops - 1) + [True]
    for layer in peeled[:-1]:
        assert layer.next_packet is not None and len(layer.next_packet) == ONION_SIZE


@pytest.mark.parametrize("hops", [1, 2, 5, 20])
def test_the_payer_and_each_hop_agree_on_the_shared_secrets(hops: int) -> None:
    onion = build_onion(route(payloads_for(hops)), SESSION_KEY, SECRETHASH)
    node_ids = [node.node_id for node in NODES[:hops]]
    assert shared_secrets(node_ids, SESSION_KEY) == onion.shared_secrets
    assert tuple(layer.shared_secret for layer in walk(onion, hops)) == onion.shared_secrets
    assert len(set(onion.shared_secrets)) == hops
    assert onion.packet[1:33] == nacl.bindings.crypto_scalarmult_base(SESSION_KEY)
    assert all(len(secret) == 32 for secret in onion.shared_secrets)


def test_payloads_of_any_length_up_to_the_limits_round_trip() -> None:
    payloads = [b"", b"x", bytes(range(MAX_PAYLOAD_SIZE)), b"middle" * 10, b"last"]
    onion = build_onion(route(payloads), SESSION_KEY, SECRETHASH)
    assert [layer.payload for layer in walk(onion, 5)] == payloads
    single = [bytes([7]) * MAX_PAYLOAD_SIZE]
    assert walk(build_onion(route(single), SESSION_KEY, SECRETHASH), 1)[0].payload == single[0]


def test_building_is_deterministic_in_the_session_key() -> None:
    hops = route(payloads_for(3))
    assert build_onion(hops, SESSION_KEY, SECRETHASH) == build_onion(hops, SESSION_KEY, SECRETHASH)
    other = build_onion(hops, OTHER_SESSION_KEY, SECRETHASH)
    assert other.packet != build_onion(hops, SESSION_KEY, SECRETHASH).packet


# -- privacy ----------------------------------------------------------------------------------


def test_no_hop_sees_another_hops_payload_in_any_packet() -> None:
    payloads = payloads_for(5)
    onion = build_onion(route(payloads), SESSION_KEY, SECRETHASH)
    packets = [onion.packet] + [layer.next_packet for layer in walk(onion, 5)[:-1]]
    for packet in packets:
        assert packet is not None
        for payload in payloads:
            assert payload[:8] not in packet


def test_a_hop_cannot_peel_a_layer_meant_for_another() -> None:
    onion = build_onion(route(payloads_for(3)), SESSION_KEY, SECRETHASH)
    second_layer = walk(onion, 1)[0].next_packet
    assert second_layer is not None
    for stranger in (NODES[0], NODES[2], NODES[5]):
        with pytest.raises(OnionError, match="authentication"):
            peel_onion(second_layer, stranger.x25519_private_key(), SECRETHASH)


def test_consecutive_packets_share_no_bytes_that_would_link_them() -> None:
    onion = build_onion(route(payloads_for(4)), SESSION_KEY, SECRETHASH)
    packets = [onion.packet] + [layer.next_packet for layer in walk(onion, 4)[:-1]]
    ephemeral_keys = {packet[1:33] for packet in packets if packet is not None}
    assert len(ephemeral_keys) == 4
    for before, after in itertools.pairwise(packets):
        assert before is not None and after is not None
        windows = {before[start : start + 12] for start in range(1, ONION_SIZE - 11)}
        assert not any(after[start : start + 12] in windows for start in range(1, ONION_SIZE - 11))


def test_the_last_hop_cannot_tell_a_short_route_from_a_long_one() -> None:
    """The space the route did not use is a stream, not zeros: where the frames end is hidden."""
    packet = build_onion(route([b"only"]), SESSION_KEY, b"").packet
    final = peel_onion(packet, NODES[0].x25519_private_key(), b"")
    assert final.next_packet is None
    routing_key = derive_key(final.shared_secret, KeyLabel.ROUTING_STREAM)
    plain = sphinx.keystream_xor(routing_key, packet[33 : 33 + ROUTING_INFO_SIZE])
    unused = plain[1 + len(b"only") :]
    assert unused.count(0) < len(unused) // 64


# -- tampering, wrong secrethash, wrong key, wrong size ------------------------------------------


@pytest.mark.parametrize("mask", [0x01, 0x80])
def test_flipping_any_byte_of_the_packet_is_caught_by_the_hop_it_reaches(mask: int) -> None:
    onion = build_onion(route(payloads_for(2)), SESSION_KEY, SECRETHASH)
    private_key = NODES[0].x25519_private_key()
    for index in range(ONION_SIZE):
        with pytest.raises(OnionError):
            peel_onion(flip(onion.packet, index, mask), private_key, SECRETHASH)


def test_a_forwarded_packet_altered_by_the_forwarding_hop_is_caught_at_the_next() -> None:
    onion = build_onion(route(payloads_for(3)), SESSION_KEY, SECRETHASH)
    forwarded = walk(onion, 1)[0].next_packet
    assert forwarded is not None
    regions = {"version": 0, "ephemeral key": 20, "routing info": 700, "mac": ONION_SIZE - 1}
    for index in regions.values():
        with pytest.raises(OnionError):
            peel_onion(flip(forwarded, index), NODES[1].x25519_private_key(), SECRETHASH)


def test_an_onion_for_another_secrethash_is_refused() -> None:
    onion = build_onion(route(payloads_for(2)), SESSION_KEY, SECRETHASH)
    for wrong in (hashlib.sha256(b"other").digest(), b"", SECRETHASH + b"\x00"):
        with pytest.raises(OnionError, match="authentication"):
            peel_onion(onion.packet, NODES[0].x25519_private_key(), wrong)


def test_an_onion_for_another_node_is_refused() -> None:
    onion = build_onion(route(payloads_for(2)), SESSION_KEY, SECRETHASH)
    with pytest.raises(OnionError, match="authentication"):
        peel_onion(onion.packet, NODES[1].x25519_private_key(), SECRETHASH)


@pytest.mark.parametrize("size", [0, 1, 33, ONION_SIZE - 1, ONION_SIZE + 1, 2 * ONION_SIZE])
def test_a_packet_of_the_wrong_size_is_refused(size: int) -> None:
    packet = (build_onion(route(payloads_for(2)), SESSION_KEY, SECRETHASH).packet * 2)[:size]
    with pytest.raises(OnionError, match=f"{ONION_SIZE} bytes"):
        peel_onion(packet, NODES[0].x25519_private_key(), SECRETHASH)


def test_an_unknown_version_and_a_low_order_ephemeral_key_are_refused() -> None:
    packet = build_onion(route(payloads_for(2)), SESSION_KEY, SECRETHASH).packet
    with pytest.raises(OnionError, match="version"):
        peel_onion(b"\x01" + packet[1:], NODES[0].x25519_private_key(), SECRETHASH)
    for low_order in (bytes(32), (1).to_bytes(32, "little")):
        with pytest.raises(OnionError, match="low-order"):
            peel_onion(packet[:1] + low_order + packet[33:], NODES[0].x25519_private_key(), b"")


def test_the_errors_are_remote_protocol_errors_and_a_bad_own_key_is_local() -> None:
    assert issubclass(OnionError, RemoteProtocolError)
    packet = build_onion(route(payloads_for(1)), SESSION_KEY, SECRETHASH).packet
    with pytest.raises(LocalProtocolError):
        peel_onion(packet, b"short", SECRETHASH)


# -- replays ----------------------------------------------------------------------------------


def test_a_replayed_packet_gives_the_same_shared_secret() -> None:
    onion = build_onion(route(payloads_for(3)), SESSION_KEY, SECRETHASH)
    private_key = NODES[0].x25519_private_key()
    first = peel_onion(onion.packet, private_key, SECRETHASH)
    again = peel_onion(onion.packet, private_key, SECRETHASH)
    assert again.shared_secret == first.shared_secret
    assert again == first
    fresh = build_onion(route(payloads_for(3)), OTHER_SESSION_KEY, SECRETHASH)
    assert peel_onion(fresh.packet, private_key, SECRETHASH).shared_secret != first.shared_secret


# -- limits -----------------------------------------------------------------------------------


def test_twenty_hops_with_the_design_payloads_fill_the_routing_info_exactly() -> None:
    sizes = (MAX_HOPS - 1) * (1 + HOP_PAYLOAD_SIZE + 16) + 1 + FINAL_PAYLOAD_SIZE
    assert sizes == ROUTING_INFO_SIZE
    assert ONION_SIZE == 1 + 32 + ROUTING_INFO_SIZE + 16
    too_big = payloads_for(MAX_HOPS)
    too_big[-1] += b"!"
    with pytest.raises(LocalProtocolError, match="routing info"):
        build_onion(route(too_big), SESSION_KEY, SECRETHASH)


def test_routes_of_no_hop_or_more_than_twenty_are_refused() -> None:
    with pytest.raises(LocalProtocolError, match="1 to 20 hops"):
        build_onion(route(payloads_for(MAX_HOPS + 1)), SESSION_KEY, SECRETHASH)
    with pytest.raises(LocalProtocolError, match="1 to 20 hops"):
        build_onion([], SESSION_KEY, SECRETHASH)
    with pytest.raises(LocalProtocolError, match="1 to 20 hops"):
        shared_secrets([node.node_id for node in NODES], SESSION_KEY)


def test_a_payload_over_the_per_hop_limit_is_refused() -> None:
    with pytest.raises(LocalProtocolError, match="hop 1's payload is 128 bytes"):
        build_onion(route([b"a", bytes(MAX_PAYLOAD_SIZE + 1)]), SESSION_KEY, SECRETHASH)


def test_a_bad_node_id_or_session_key_is_refused() -> None:
    hops = route(payloads_for(2))
    bad = [hops[0], OnionHop(b"\xff" * 32, b"x")]
    with pytest.raises(LocalProtocolError, match="hop 1's node id"):
        build_onion(bad, SESSION_KEY, SECRETHASH)
    with pytest.raises(LocalProtocolError, match="session key"):
        build_onion(hops, SESSION_KEY[:31], SECRETHASH)


# -- the payer's one-multiplication shortcut ----------------------------------------------------


def test_the_payers_scalar_reaches_the_point_the_hops_chain_reaches() -> None:
    """X25519(t, P) for t ≡ ±a·b (mod l) is X25519(b, X25519(a, P)), for the base point and a
    node's key alike: the payer's single multiplication equals the hops' chain."""
    for seed in range(50):
        a = hashlib.sha256(b"a%d" % seed).digest()
        b = hashlib.sha256(b"b%d" % seed).digest()
        product = sphinx._clamp(a) * sphinx._clamp(b) % sphinx._GROUP_ORDER
        t = sphinx._x25519_scalar(product)
        chained = nacl.bindings.crypto_scalarmult(b, nacl.bindings.crypto_scalarmult_base(a))
        assert nacl.bindings.crypto_scalarmult_base(t) == chained
        node_key = bytes(
            nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(NODES[seed % 5].node_id)
        )
        chained = nacl.bindings.crypto_scalarmult(b, nacl.bindings.crypto_scalarmult(a, node_key))
        assert nacl.bindings.crypto_scalarmult(t, node_key) == chained


def test_the_rare_scalar_with_no_clamped_form_asks_for_another_session_key() -> None:
    with pytest.raises(LocalProtocolError, match="draw another"):
        sphinx._x25519_scalar(2**255 % sphinx._GROUP_ORDER)


def test_no_key_label_is_a_prefix_of_another_and_secrets_stay_out_of_reprs() -> None:
    for left, right in itertools.permutations(KeyLabel, 2):
        assert not right.value.startswith(left.value)
    onion = build_onion(route(payloads_for(2)), SESSION_KEY, SECRETHASH)
    peeled = walk(onion, 1)[0]
    for secret in onion.shared_secrets:
        assert secret.hex() not in repr(onion) and repr(secret) not in repr(onion)
    assert repr(peeled.shared_secret) not in repr(peeled)


# -- failures ---------------------------------------------------------------------------------


@pytest.mark.parametrize("failing_hop", [0, 1, 2, 3, 4])
def test_a_failure_reaches_the_payer_naming_the_hop_that_failed(failing_hop: int) -> None:
    onion = build_onion(route(payloads_for(5)), SESSION_KEY, SECRETHASH)
    secrets = [layer.shared_secret for layer in walk(onion, 5)]
    message = b"channel " + bytes([failing_hop]) * 32 + b" has no capacity"
    packet = failure_packet(secrets[failing_hop], message)
    seen = [packet]
    for index in reversed(range(failing_hop)):
        packet = wrap_failure(secrets[index], packet)
        seen.append(packet)
    assert all(len(each) == FAILURE_SIZE for each in seen)
    assert len(set(seen)) == len(seen)
    assert all(message not in each for each in seen)
    assert read_failure(onion.shared_secrets, packet) == (failing_hop, message)


@pytest.mark.parametrize("message", [b"", b"x", bytes(range(256))[:MAX_FAILURE_MESSAGE_SIZE]])
def test_failure_messages_of_any_length_up_to_the_limit_round_trip(message: bytes) -> None:
    onion = build_onion(route(payloads_for(2)), SESSION_KEY, SECRETHASH)
    packet = wrap_failure(onion.shared_secrets[0], failure_packet(onion.shared_secrets[1], message))
    assert read_failure(onion.shared_secrets, packet) == (1, message)


def test_a_failure_message_over_the_limit_is_refused() -> None:
    with pytest.raises(LocalProtocolError, match=f"at most {MAX_FAILURE_MESSAGE_SIZE} bytes"):
        failure_packet(SESSION_KEY, bytes(MAX_FAILURE_MESSAGE_SIZE + 1))


def test_a_corrupted_failure_is_refused() -> None:
    onion = build_onion(route(payloads_for(3)), SESSION_KEY, SECRETHASH)
    secrets = onion.shared_secrets
    packet = wrap_failure(secrets[0], wrap_failure(secrets[1], failure_packet(secrets[2], b"no")))
    for index in range(FAILURE_SIZE):
        with pytest.raises(OnionError, match="no hop"):
            read_failure(secrets, flip(packet, index))


def test_a_failure_not_made_on_this_route_or_missing_a_wrap_is_refused() -> None:
    onion = build_onion(route(payloads_for(3)), SESSION_KEY, SECRETHASH)
    other = build_onion(route(payloads_for(3)), OTHER_SESSION_KEY, SECRETHASH)
    secrets = onion.shared_secrets
    with pytest.raises(OnionError, match="no hop"):
        read_failure(
            secrets, wrap_failure(secrets[0], failure_packet(other.shared_secrets[1], b""))
        )
    with pytest.raises(OnionError, match="no hop"):
        read_failure(secrets, wrap_failure(secrets[0], failure_packet(secrets[2], b"skipped")))
    with pytest.raises(OnionError, match="no hop"):
        read_failure([], failure_packet(secrets[0], b""))


@pytest.mark.parametrize("size", [0, FAILURE_SIZE - 1, FAILURE_SIZE + 1])
def test_a_failure_of_the_wrong_size_is_refused(size: int) -> None:
    secrets = build_onion(route(payloads_for(2)), SESSION_KEY, SECRETHASH).shared_secrets
    with pytest.raises(OnionError, match=f"{FAILURE_SIZE} bytes"):
        read_failure(secrets, bytes(size))
    with pytest.raises(OnionError, match=f"{FAILURE_SIZE} bytes"):
        wrap_failure(secrets[0], bytes(size))


def test_a_sealed_failure_that_breaks_the_format_names_the_hop_that_sealed_it() -> None:
    secrets = build_onion(route(payloads_for(3)), SESSION_KEY, SECRETHASH).shared_secrets
    seal = ChaCha20Poly1305(derive_key(secrets[1], KeyLabel.FAILURE_SEAL))
    too_long = (MAX_FAILURE_MESSAGE_SIZE + 1).to_bytes(2, "big") + bytes(MAX_FAILURE_MESSAGE_SIZE)
    dirty_padding = (1).to_bytes(2, "big") + b"x" + b"\x01" * (MAX_FAILURE_MESSAGE_SIZE - 1)
    for plain in (too_long, dirty_padding):
        packet = wrap_failure(secrets[0], seal.encrypt(bytes(12), plain, None))
        with pytest.raises(MalformedFailure) as refused:
            read_failure(secrets, packet)
        assert refused.value.hop_index == 1
