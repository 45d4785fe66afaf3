"""Balance proofs: the signed state of one channel direction, and their counter-signatures.

A proof is signed by its sender over `BALANCE_PROOF || data`, where `data` is the msgpack array
(chain_id, channel_id, sender, nonce, transferred_amount, locked_amount, locksroot). Its receiver
acknowledges it with a counter-signature over `BALANCE_PROOF_ACK || data || sender's signature`,
which can never pass for a proof of the receiver's own (different tag, different bytes).
Proofs travel as `SignedBalanceProof`: the exact bytes that were signed, so nobody re-encodes
to verify.
"""

from __future__ import annotations

from dataclasses import dataclass

from p2pchan.crypto.keys import Identity
from p2pchan.crypto.signing import SigningTag, is_valid
from p2pchan.errors import RemoteProtocolError
from p2pchan.types import Address, ChainId, ChannelId, Locksroot
from p2pchan.wire.codec import pack, unpack
from p2pchan.wire.fields import BYTES32, SIGNATURE, U64, Bytes, Optional
from p2pchan.wire.records import Record, wire

MAX_PROOF_DATA = 256


@dataclass(frozen=True, slots=True)
class BalanceProof(Record):
    chain_id: ChainId = wire(BYTES32)
    channel_id: ChannelId = wire(BYTES32)
    sender: Address = wire(BYTES32)
    nonce: int = wire(U64)
    transferred_amount: int = wire(U64)
    locked_amount: int = wire(U64)
    locksroot: Locksroot = wire(BYTES32)

    def encode(self) -> bytes:
        return pack(self.to_wire())


@dataclass(frozen=True, slots=True)
class SignedBalanceProof(Record):
    """A proof's signed bytes, its sender's signature and, once acked, the counter-signature."""

    data: bytes = wire(Bytes(max_size=MAX_PROOF_DATA))
    signature: bytes = wire(SIGNATURE)
    counter_signature: bytes | None = wire(Optional(SIGNATURE))

    def proof(self) -> BalanceProof:
        """Decode the signed bytes strictly (`RemoteProtocolError` if malformed)."""
        return BalanceProof.from_wire(unpack(self.data, max_len=MAX_PROOF_DATA), "balance_proof")

    def ack_data(self) -> bytes:
        """What the receiver counter-signs: the proof bytes and the sender's signature."""
        return self.data + self.signature

    def sender_signature_valid(self, proof: BalanceProof) -> bool:
        return is_valid(proof.sender, SigningTag.BALANCE_PROOF, self.data, self.signature)

    def counter_signature_valid(self, receiver: Address) -> bool:
        if self.counter_signature is None:
            return False
        return is_valid(
            receiver, SigningTag.BALANCE_PROOF_ACK, self.ack_data(), self.counter_signature
        )


def sign_balance_proof(identity: Identity, proof: BalanceProof) -> SignedBalanceProof:
    if proof.sender != identity.node_id:
        raise ValueError("a node signs only proofs of its own direction")
    data = proof.encode()
    return SignedBalanceProof(data, identity.sign(SigningTag.BALANCE_PROOF, data), None)


def counter_sign(identity: Identity, signed: SignedBalanceProof) -> SignedBalanceProof:
    """The receiver's acknowledgement, attached to the proof."""
    signature = identity.sign(SigningTag.BALANCE_PROOF_ACK, signed.ack_data())
    return SignedBalanceProof(signed.data, signed.signature, signature)


def decode_checked(signed: SignedBalanceProof) -> BalanceProof:
    """Decode a proof and check its sender's signature; `RemoteProtocolError` otherwise."""
    proof = signed.proof()
    if not signed.sender_signature_valid(proof):
        raise RemoteProtocolError("balance proof signature is not its sender's")
    return proof
