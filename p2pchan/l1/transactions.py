"""Layer-1 transactions: signed calls with a chain id, a sender nonce and a fee.

The signed body is the msgpack array `[chain_id, sender, nonce, fee, kind, [call fields...]]`;
a transaction travels as `SignedTransaction(body, signature)` and its hash is sha256(body).
Faucet grants (dev chains only) are transactions of kind FAUCET from the all-zero address with
an all-zero signature; the chain accepts them only from its own faucet, never from `submit`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar

from p2pchan.crypto.hashing import sha256
from p2pchan.crypto.keys import Identity
from p2pchan.crypto.merkle import PROOF_SIZE
from p2pchan.crypto.signing import SigningTag, is_valid
from p2pchan.errors import ChainError, RemoteProtocolError
from p2pchan.types import Address, ChainId, ChannelId, PlasmaId, Secret, TxHash
from p2pchan.wire.balance_proof import SignedBalanceProof
from p2pchan.wire.codec import pack, unpack
from p2pchan.wire.coop_settle import MAX_COOP_SETTLE_DATA
from p2pchan.wire.fields import BYTES32, SIGNATURE, U64, Bytes
from p2pchan.wire.locks import LOCK_SIZE
from p2pchan.wire.plasma import MAX_INPUTS, Confirmation, SignedPlasmaTx
from p2pchan.wire.records import Nested, NestedList, Record, wire

MAX_PENDING_LOCKS = 1000  # protocol bound per channel direction; nodes default to 483
MAX_TX_BODY = 64 * 1024
FAUCET_ADDRESS = Address(bytes(32))
NO_SIGNATURE = bytes(64)


@enum.unique
class TxKind(enum.IntEnum):
    TRANSFER = 1
    CHANNEL_OPEN = 2
    CHANNEL_DEPOSIT = 3
    CHANNEL_CLOSE = 4
    CHANNEL_UPDATE = 5
    CHANNEL_SETTLE = 6
    CHANNEL_UNLOCK = 7
    COOPERATIVE_SETTLE = 8
    REGISTER_SECRET = 9
    FAUCET = 10
    PLASMA_CREATE = 11
    PLASMA_SUBMIT_BLOCK = 12
    PLASMA_DEPOSIT = 13
    PLASMA_START_EXIT = 14
    PLASMA_CHALLENGE_EXIT = 15
    PLASMA_FINALIZE_EXITS = 16


class Call(Record):
    __slots__ = ()
    KIND: ClassVar[TxKind]


@dataclass(frozen=True, slots=True)
class Transfer(Call):
    KIND = TxKind.TRANSFER
    to: Address = wire(BYTES32)
    amount: int = wire(U64)


@dataclass(frozen=True, slots=True)
class ChannelOpen(Call):
    KIND = TxKind.CHANNEL_OPEN
    partner: Address = wire(BYTES32)
    settle_timeout: int = wire(U64)


@dataclass(frozen=True, slots=True)
class ChannelDeposit(Call):
    KIND = TxKind.CHANNEL_DEPOSIT
    channel_id: ChannelId = wire(BYTES32)
    participant: Address = wire(BYTES32)
    total_deposit: int = wire(U64)


@dataclass(frozen=True, slots=True)
class ChannelClose(Call):
    KIND = TxKind.CHANNEL_CLOSE
    channel_id: ChannelId = wire(BYTES32)
    proofs: tuple[SignedBalanceProof, ...] = wire(NestedList(SignedBalanceProof, 2))


@dataclass(frozen=True, slots=True)
class ChannelUpdate(Call):
    KIND = TxKind.CHANNEL_UPDATE
    channel_id: ChannelId = wire(BYTES32)
    proofs: tuple[SignedBalanceProof, ...] = wire(NestedList(SignedBalanceProof, 2))


@dataclass(frozen=True, slots=True)
class ChannelSettle(Call):
    KIND = TxKind.CHANNEL_SETTLE
    channel_id: ChannelId = wire(BYTES32)


@dataclass(frozen=True, slots=True)
class ChannelUnlock(Call):
    KIND = TxKind.CHANNEL_UNLOCK
    channel_id: ChannelId = wire(BYTES32)
    sender: Address = wire(BYTES32)
    locks: bytes = wire(Bytes(max_size=MAX_PENDING_LOCKS * LOCK_SIZE))  # see core.locks


@dataclass(frozen=True, slots=True)
class CooperativeSettleCall(Call):
    KIND = TxKind.COOPERATIVE_SETTLE
    channel_id: ChannelId = wire(BYTES32)
    data: bytes = wire(Bytes(max_size=MAX_COOP_SETTLE_DATA))  # a signed core.coop_settle message
    signature_a: bytes = wire(SIGNATURE)
    signature_b: bytes = wire(SIGNATURE)


@dataclass(frozen=True, slots=True)
class RegisterSecret(Call):
    KIND = TxKind.REGISTER_SECRET
    secret: Secret = wire(BYTES32)


@dataclass(frozen=True, slots=True)
class FaucetGrant(Call):
    KIND = TxKind.FAUCET
    to: Address = wire(BYTES32)
    amount: int = wire(U64)


# -- Plasma root contract (p2pchan.l1.plasma_contract) --------------------------------------


@dataclass(frozen=True, slots=True)
class PlasmaCreate(Call):
    KIND = TxKind.PLASMA_CREATE
    exit_bond: int = wire(U64)
    challenge_period: int = wire(U64)


@dataclass(frozen=True, slots=True)
class PlasmaSubmitBlock(Call):
    KIND = TxKind.PLASMA_SUBMIT_BLOCK
    plasma_id: PlasmaId = wire(BYTES32)
    root: bytes = wire(BYTES32)


@dataclass(frozen=True, slots=True)
class PlasmaDeposit(Call):
    KIND = TxKind.PLASMA_DEPOSIT
    plasma_id: PlasmaId = wire(BYTES32)
    amount: int = wire(U64)


@dataclass(frozen=True, slots=True)
class PlasmaStartExit(Call):
    """Exit output `utxo_pos` of `tx`: its Merkle proof in that block (empty for a deposit)
    and one confirmation per input, in input order (none for a deposit)."""

    KIND = TxKind.PLASMA_START_EXIT
    plasma_id: PlasmaId = wire(BYTES32)
    utxo_pos: int = wire(U64)
    tx: SignedPlasmaTx = wire(Nested(SignedPlasmaTx))
    proof: bytes = wire(Bytes(max_size=PROOF_SIZE))
    confirmations: tuple[Confirmation, ...] = wire(NestedList(Confirmation, MAX_INPUTS))


@dataclass(frozen=True, slots=True)
class PlasmaChallengeExit(Call):
    """Challenge the exit of `utxo_pos` with the transaction at `spending_pos` (its block and
    index as a position with output index 0) that spends it, and the exiting owner's
    confirmation of it."""

    KIND = TxKind.PLASMA_CHALLENGE_EXIT
    plasma_id: PlasmaId = wire(BYTES32)
    utxo_pos: int = wire(U64)
    spending_pos: int = wire(U64)
    spending_tx: SignedPlasmaTx = wire(Nested(SignedPlasmaTx))
    proof: bytes = wire(Bytes(size=PROOF_SIZE))
    confirmation: bytes = wire(SIGNATURE)


@dataclass(frozen=True, slots=True)
class PlasmaFinalizeExits(Call):
    KIND = TxKind.PLASMA_FINALIZE_EXITS
    plasma_id: PlasmaId = wire(BYTES32)
    max_count: int = wire(U64)


CALLS: dict[int, type[Call]] = {
    cls.KIND: cls
    for cls in (
        Transfer,
        ChannelOpen,
        ChannelDeposit,
        ChannelClose,
        ChannelUpdate,
        ChannelSettle,
        ChannelUnlock,
        CooperativeSettleCall,
        RegisterSecret,
        FaucetGrant,
        PlasmaCreate,
        PlasmaSubmitBlock,
        PlasmaDeposit,
        PlasmaStartExit,
        PlasmaChallengeExit,
        PlasmaFinalizeExits,
    )
}
assert set(CALLS) == set(TxKind), "every TxKind needs a call record"


@dataclass(frozen=True, slots=True)
class SignedTransaction(Record):
    body: bytes = wire(Bytes(max_size=MAX_TX_BODY))
    signature: bytes = wire(SIGNATURE)


@dataclass(frozen=True, slots=True)
class Transaction:
    """A decoded transaction whose signature has been checked (see `decode_transaction`)."""

    chain_id: ChainId
    sender: Address
    nonce: int
    fee: int
    call: Call
    signed: SignedTransaction
    hash: TxHash

    @property
    def is_faucet_grant(self) -> bool:
        return isinstance(self.call, FaucetGrant)


def encode_body(chain_id: ChainId, sender: Address, nonce: int, fee: int, call: Call) -> bytes:
    return pack([chain_id, sender, nonce, fee, int(call.KIND), call.to_wire()])


def sign_transaction(
    identity: Identity, chain_id: ChainId, nonce: int, call: Call, *, fee: int = 0
) -> SignedTransaction:
    body = encode_body(chain_id, identity.node_id, nonce, fee, call)
    return SignedTransaction(body, identity.sign(SigningTag.L1_TRANSACTION, body))


def faucet_transaction(chain_id: ChainId, grant_number: int, grant: FaucetGrant) -> Transaction:
    body = encode_body(chain_id, FAUCET_ADDRESS, grant_number, 0, grant)
    signed = SignedTransaction(body, NO_SIGNATURE)
    return Transaction(
        chain_id, FAUCET_ADDRESS, grant_number, 0, grant, signed, TxHash(sha256(body))
    )


def decode_transaction(signed: SignedTransaction, *, verify: bool = True) -> Transaction:
    """Decode a body strictly and check its sender's signature (faucet grants carry none).

    Raises `ChainError` ("malformed" or "bad_signature"): a rejected call says why. `verify=False`
    is only for replaying our own checksummed block log, whose signatures were checked on entry.
    """
    try:
        value = unpack(signed.body, max_len=MAX_TX_BODY)
        if type(value) is not list or len(value) != 6:
            raise RemoteProtocolError("transaction body must be a 6-item array")
        chain_id = ChainId(BYTES32.check(value[0], "tx.chain_id"))
        sender = Address(BYTES32.check(value[1], "tx.sender"))
        nonce = U64.check(value[2], "tx.nonce")
        fee = U64.check(value[3], "tx.fee")
        kind = U64.check(value[4], "tx.kind")
        call_cls = CALLS.get(kind)
        if call_cls is None:
            raise RemoteProtocolError(f"unknown transaction kind {kind}")
        call = call_cls.from_wire(value[5], f"tx.{call_cls.__name__}")
    except RemoteProtocolError as error:
        raise ChainError("malformed", str(error)) from None
    is_grant = isinstance(call, FaucetGrant)
    if is_grant:
        if sender != FAUCET_ADDRESS or signed.signature != NO_SIGNATURE:
            raise ChainError("malformed", "a faucet grant comes from the faucet address unsigned")
    elif verify and not is_valid(sender, SigningTag.L1_TRANSACTION, signed.body, signed.signature):
        raise ChainError("bad_signature", "transaction signature is not the sender's")
    return Transaction(chain_id, sender, nonce, fee, call, signed, TxHash(sha256(signed.body)))
