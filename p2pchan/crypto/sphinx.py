"""Onion packets for payments across hops: build (payer) and peel (each hop). Pure: no IO, no
clock, no randomness -- the payer passes a fresh 32-byte session key.

Each hop of a route learns only its own payload (amount and expiry to forward, next channel;
the payee's secret) and whether it is the last hop; not the payer, not the route's length, not
its own position. Every packet is exactly `ONION_SIZE` bytes at every hop. The construction is
Sphinx as Lightning's BOLT 4 uses it, on X25519 instead of secp256k1:

    packet  = version (1) || ephemeral key E_i (32) || routing info (ROUTING_INFO_SIZE) || mac (16)
    frame_i = header (1) || payload_i || mac_{i+1} (16, absent in the last hop's frame)
    header  = 0x80 (last hop) | payload length (0..127)

- Keys. A hop's X25519 key is converted from its Ed25519 identity, as the transport does. Hop i
  computes dh_i = X25519(its key, E_i) and ss_i = BLAKE2b-256(key="p2pchan/sphinx/1/shared_secret",
  dh_i || E_i); every other key is BLAKE2b-256(key=ss_i, label) with its own label (`KeyLabel`).
  E_i is in the hash so that no other encoding of E_i passes the MAC. Keyed BLAKE2b is a PRF in
  one call (1 µs); HKDF would build an object per key.
- Blinding. One ephemeral key travels; each hop replaces it with E_{i+1} = X25519(b_i, E_i),
  b_i = BLAKE2b(ss_i, "blinding"), so hops that compare keys cannot tell they carry one payment.
  The payer knows E_i = [s_i]B with s_i = clamp(x)·clamp(b_0)···clamp(b_{i-1}) mod l; it reaches
  E_i and dh_i = [s_i]A_i with one multiplication each, by a clamped scalar t_i ≡ ±s_i (mod l)
  that X25519 leaves as it is (`_x25519_scalar`), where chains of multiplications would cost
  230 instead of 40 for 20 hops.
- Routing info. Hop i checks the Poly1305 tag of ChaCha20-Poly1305 (key "header_mac", empty
  plaintext, associated data version || routing info || associated_data) -- so the lock's
  secrethash is bound into every hop's MAC -- then XORs routing info || frame-size zeros with the
  ChaCha20 stream of key "routing_stream", reads its frame, and forwards the rest shifted left:
  the tail it appended is stream, which the payer predicted (the *filler*), so the next hop's MAC
  holds and every hop sees a full-size packet. The unused space starts as a ChaCha20 stream of
  BLAKE2b(session key, "padding"), so the last hop cannot see where the route's frames end.
  Each MAC key signs one message (a fresh session key per onion), as Poly1305 requires. Both
  ciphers come from `cryptography`, as in the transport (PyNaCl has no raw ChaCha20 stream).
- Sizes. 16-byte tags and a 1-byte header where BOLT 4 has 32-byte HMACs and a varint: 19 hops
  of 56 bytes and a last hop of 96 fill ROUTING_INFO_SIZE = 19·73 + 97 = 1484 exactly, so
  ONION_SIZE = 1533. Carrying a fresh key per hop instead of blinding would save one X25519 per
  peel but cost 32 bytes per hop (640 more on every lock); blinding is the better trade.
- Cost (benchmarks/sphinx_micro.py): a peel makes 2 X25519 multiplications (the last hop's 1,
  a packet with a bad MAC 1) and takes 130 µs, 100 of them in X25519; a build makes 2 per hop
  plus libsodium's check of each node id: 0.6 ms for 3 hops, 4.1 ms for 20.
- Replays. ss_i depends only on E_i and the hop's key: a replayed packet, however its routing
  info is altered, yields the same `shared_secret`, which the hop stores until the lock's expiry.

Failures travel back under the same shared secrets (`p2pchan.crypto.sphinx_failure`).
Errors: a bad packet is an `OnionError` (the sender's fault); a route we cannot build is a
`LocalProtocolError`. Reprs never show shared secrets.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import nacl.bindings
import nacl.exceptions
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from p2pchan.crypto.keys import x25519_public_key
from p2pchan.errors import CryptoError, LocalProtocolError, RemoteProtocolError

VERSION = 0
MAX_HOPS = 20
KEY_SIZE = 32
MAC_SIZE = 16
HEADER_SIZE = 1
MAX_PAYLOAD_SIZE = 127
"""Per hop: the header's 7 length bits."""
HOP_PAYLOAD_SIZE = 56
"""The payload every forwarding hop of a 20-hop route may carry."""
FINAL_PAYLOAD_SIZE = 96
"""The payload the last hop of a 20-hop route may carry."""
ROUTING_INFO_SIZE = (MAX_HOPS - 1) * (HEADER_SIZE + HOP_PAYLOAD_SIZE + MAC_SIZE) + (
    HEADER_SIZE + FINAL_PAYLOAD_SIZE
)
ONION_SIZE = 1 + KEY_SIZE + ROUTING_INFO_SIZE + MAC_SIZE
MAX_FRAME_SIZE = HEADER_SIZE + MAX_PAYLOAD_SIZE + MAC_SIZE

_LAST_HOP = 0x80
_LENGTH_MASK = 0x7F
_VERSION_BYTE = bytes([VERSION])
_ROUTING_START = 1 + KEY_SIZE
_MAC_START = _ROUTING_START + ROUTING_INFO_SIZE
_NONCE_12 = bytes(12)
_NONCE_16 = bytes(16)
_EXTENSION = bytes(MAX_FRAME_SIZE)

# Ed25519's prime group order l, and what a clamped X25519 scalar looks like: 2**254 + 8k.
_GROUP_ORDER = 2**252 + 27742317777372353535851937790883648493
_INVERSE_OF_8 = pow(8, -1, _GROUP_ORDER)
_HIGH_BIT = 2**254
_K_LIMIT = 2**251
_NACL_ERRORS = (nacl.exceptions.CryptoError, ValueError, TypeError)


class OnionError(RemoteProtocolError):
    """An onion or failure packet is malformed, tampered with, or not for this key."""


@enum.unique
class KeyLabel(bytes, enum.Enum):
    """The label of every key derived in onions and their failures; none a prefix of another."""

    SHARED_SECRET = b"p2pchan/sphinx/1/shared_secret"
    ROUTING_STREAM = b"p2pchan/sphinx/1/routing_stream"
    HEADER_MAC = b"p2pchan/sphinx/1/header_mac"
    BLINDING = b"p2pchan/sphinx/1/blinding"
    PADDING = b"p2pchan/sphinx/1/padding"
    FAILURE_SEAL = b"p2pchan/sphinx/1/failure_seal"
    FAILURE_WRAP = b"p2pchan/sphinx/1/failure_wrap"


@dataclass(frozen=True, slots=True)
class OnionHop:
    node_id: bytes
    """The hop's 32-byte Ed25519 public key."""
    payload: bytes


@dataclass(frozen=True, slots=True)
class Onion:
    packet: bytes
    """Exactly `ONION_SIZE` bytes, for the first hop."""
    shared_secrets: tuple[bytes, ...] = field(repr=False)
    """One per hop, in route order: the payer reads failures with them."""


@dataclass(frozen=True, slots=True)
class Peeled:
    payload: bytes
    next_packet: bytes | None
    """For the next hop; None when this hop is the last."""
    shared_secret: bytes = field(repr=False)
    """The same for every replay of this packet: store it until the lock expires."""


def derive_key(secret: bytes, label: KeyLabel) -> bytes:
    """A 32-byte key for one purpose: BLAKE2b-256 keyed with `secret`, over the label."""
    return hashlib.blake2b(label.value, key=secret, digest_size=KEY_SIZE).digest()


def keystream_xor(key: bytes, data: bytes) -> bytes:
    """`data` XOR the ChaCha20 stream of `key` (nonce and counter zero; one key, one stream)."""
    return Cipher(algorithms.ChaCha20(key, _NONCE_16), mode=None).encryptor().update(data)


def shared_secrets(node_ids: Sequence[bytes], session_key: bytes) -> tuple[bytes, ...]:
    """The shared secret of each hop of a route, as `build_onion` made them."""
    return _route_secrets(node_ids, session_key)[1]


def build_onion(hops: Sequence[OnionHop], session_key: bytes, associated_data: bytes) -> Onion:
    """The onion for `hops` (first hop first), bound to `associated_data` (the secrethash).

    `session_key` must be 32 fresh random bytes, never used for another onion: it keys every
    hop's one-time MAC and decides every key the route's hops see.
    """
    sizes = _frame_sizes(hops)
    first_ephemeral, secrets = _route_secrets([hop.node_id for hop in hops], session_key)
    filler = _filler(secrets[:-1], sizes[:-1])
    routing = keystream_xor(derive_key(session_key, KeyLabel.PADDING), bytes(ROUTING_INFO_SIZE))
    next_mac = b""
    for index in reversed(range(len(hops))):
        payload = hops[index].payload
        last = _LAST_HOP if index == len(hops) - 1 else 0
        frame = bytes([last | len(payload)]) + payload + next_mac
        routing = frame + routing[: ROUTING_INFO_SIZE - len(frame)]
        routing = keystream_xor(derive_key(secrets[index], KeyLabel.ROUTING_STREAM), routing)
        if last and filler:
            routing = routing[: ROUTING_INFO_SIZE - len(filler)] + filler
        next_mac = _mac(secrets[index], routing, associated_data)
    return Onion(_VERSION_BYTE + first_ephemeral + routing + next_mac, secrets)


def peel_onion(packet: bytes, x25519_private_key: bytes, associated_data: bytes) -> Peeled:
    """Check and open this hop's layer; two X25519 operations (one for the last hop)."""
    if len(x25519_private_key) != KEY_SIZE:
        raise LocalProtocolError("an X25519 private key is 32 bytes")
    if len(packet) != ONION_SIZE:
        raise OnionError(f"an onion is {ONION_SIZE} bytes, got {len(packet)}")
    if packet[0] != VERSION:
        raise OnionError(f"unknown onion version {packet[0]}")
    ephemeral = packet[1:_ROUTING_START]
    routing = packet[_ROUTING_START:_MAC_START]
    try:
        dh = nacl.bindings.crypto_scalarmult(x25519_private_key, ephemeral)
    except _NACL_ERRORS:
        raise OnionError("onion ephemeral key is a low-order point") from None
    secret = _shared_secret(dh, ephemeral)
    try:
        ChaCha20Poly1305(derive_key(secret, KeyLabel.HEADER_MAC)).decrypt(
            _NONCE_12, packet[_MAC_START:], _VERSION_BYTE + routing + associated_data
        )
    except InvalidTag:
        raise OnionError("onion failed authentication") from None
    plain = keystream_xor(derive_key(secret, KeyLabel.ROUTING_STREAM), routing + _EXTENSION)
    header = plain[0]
    end = HEADER_SIZE + (header & _LENGTH_MASK)
    payload = plain[HEADER_SIZE:end]
    if header & _LAST_HOP:
        return Peeled(payload, None, secret)
    next_mac = plain[end : end + MAC_SIZE]
    next_routing = plain[end + MAC_SIZE : end + MAC_SIZE + ROUTING_INFO_SIZE]
    blinding = derive_key(secret, KeyLabel.BLINDING)
    try:
        next_ephemeral = nacl.bindings.crypto_scalarmult(blinding, ephemeral)
    except _NACL_ERRORS:  # defensive: a key the first multiplication took passes here
        raise OnionError("onion ephemeral key cannot be blinded") from None
    return Peeled(payload, _VERSION_BYTE + next_ephemeral + next_routing + next_mac, secret)


def _frame_sizes(hops: Sequence[OnionHop]) -> list[int]:
    if not 1 <= len(hops) <= MAX_HOPS:
        raise LocalProtocolError(f"an onion route has 1 to {MAX_HOPS} hops, not {len(hops)}")
    sizes = []
    for index, hop in enumerate(hops):
        if len(hop.payload) > MAX_PAYLOAD_SIZE:
            raise LocalProtocolError(
                f"hop {index}'s payload is {len(hop.payload)} bytes; at most {MAX_PAYLOAD_SIZE}"
            )
        sizes.append(HEADER_SIZE + len(hop.payload) + MAC_SIZE)
    sizes[-1] -= MAC_SIZE
    if sum(sizes) > ROUTING_INFO_SIZE:
        raise LocalProtocolError(
            f"the route's payloads take {sum(sizes)} bytes of routing info; "
            f"at most {ROUTING_INFO_SIZE}"
        )
    return sizes


def _route_secrets(
    node_ids: Sequence[bytes], session_key: bytes
) -> tuple[bytes, tuple[bytes, ...]]:
    """The first hop's ephemeral key and every hop's shared secret; 2 X25519 per hop."""
    if len(session_key) != KEY_SIZE:
        raise LocalProtocolError("an onion session key is 32 bytes")
    if not 1 <= len(node_ids) <= MAX_HOPS:
        raise LocalProtocolError(f"an onion route has 1 to {MAX_HOPS} hops, not {len(node_ids)}")
    scalar = _clamp(session_key) % _GROUP_ORDER
    first_ephemeral = b""
    secrets = []
    for index, node_id in enumerate(node_ids):
        try:
            public_key = x25519_public_key(node_id)
        except CryptoError:
            raise LocalProtocolError(f"hop {index}'s node id is not a valid key") from None
        multiplier = _x25519_scalar(scalar)
        ephemeral = nacl.bindings.crypto_scalarmult_base(multiplier)
        dh = nacl.bindings.crypto_scalarmult(multiplier, public_key)
        if index == 0:
            first_ephemeral = ephemeral
        secret = _shared_secret(dh, ephemeral)
        secrets.append(secret)
        scalar = scalar * _clamp(derive_key(secret, KeyLabel.BLINDING)) % _GROUP_ORDER
    return first_ephemeral, tuple(secrets)


def _clamp(scalar: bytes) -> int:
    """The scalar X25519 multiplies by when given these 32 bytes (RFC 7748 decodeScalar25519)."""
    value = int.from_bytes(scalar, "little")
    return (value & ~7 & (2**255 - 1)) | _HIGH_BIT


def _x25519_scalar(scalar: int) -> bytes:
    """32 bytes that X25519 multiplies by a t ≡ ±scalar (mod l); X25519 sees only u, which
    t and -t share, and a clamped t is 8k + 2**254 with k < 2**251, so one sign always fits,
    except for about 2**-126 of all scalars (the payer then draws another session key).
    """
    for candidate in (scalar, _GROUP_ORDER - scalar):
        k = (candidate - _HIGH_BIT) * _INVERSE_OF_8 % _GROUP_ORDER
        if k < _K_LIMIT:
            return (_HIGH_BIT + 8 * k).to_bytes(KEY_SIZE, "little")
    raise LocalProtocolError("this onion session key cannot be used; draw another")


def _shared_secret(dh: bytes, ephemeral: bytes) -> bytes:
    return hashlib.blake2b(
        dh + ephemeral, key=KeyLabel.SHARED_SECRET.value, digest_size=KEY_SIZE
    ).digest()


def _mac(secret: bytes, routing: bytes, associated_data: bytes) -> bytes:
    """Poly1305 tag of ChaCha20-Poly1305 with an empty plaintext: a one-time MAC per hop."""
    return ChaCha20Poly1305(derive_key(secret, KeyLabel.HEADER_MAC)).encrypt(
        _NONCE_12, b"", _VERSION_BYTE + routing + associated_data
    )


def _filler(secrets: Sequence[bytes], sizes: Sequence[int]) -> bytes:
    """The stream tails hops 0..n-2 append as they shift the routing info: the last hop's
    routing info must end with them so that every MAC on the way holds."""
    filler = b""
    for secret, size in zip(secrets, sizes, strict=True):
        stream = keystream_xor(
            derive_key(secret, KeyLabel.ROUTING_STREAM), bytes(ROUTING_INFO_SIZE + size)
        )
        filler = _xor(filler + bytes(size), stream[ROUTING_INFO_SIZE - len(filler) :])
    return filler


def _xor(left: bytes, right: bytes) -> bytes:
    value = int.from_bytes(left, "little") ^ int.from_bytes(right, "little")
    return value.to_bytes(len(left), "little")
