"""The layer-1 API: request and response messages between the chain server and its clients.

Every request carries a `request_id` the response echoes, so a client may pipeline requests on
one connection. A rejected request gets `ErrorResponse(code, message)`, the code being a stable
`ChainError` code. After `Subscribe`, the server pushes one `BlockNotice` per sealed block, from
the requested height on, and stops reading requests on that connection.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from p2pchan.l1.blocks import Block, BlockHeader
from p2pchan.l1.events import EVENTS, Event
from p2pchan.l1.plasma_state import BlockCommit, ExitRecord, PlasmaChainInfo
from p2pchan.l1.state import ChannelRecord
from p2pchan.l1.transactions import SignedTransaction
from p2pchan.types import Address, BlockHash, ChainId, ChannelId, PlasmaId, SecretHash, TxHash
from p2pchan.wire.codec import MessageList, MessageRegistry
from p2pchan.wire.fields import BOOL, BYTES32, U32, U64, Optional, Text
from p2pchan.wire.records import Nested, Record, wire

MAX_REQUEST_SIZE = 256 * 1024
MAX_RESPONSE_SIZE = 64 * 1024 * 1024
MAX_EVENTS_PER_BLOCK = 100_000


@enum.unique
class L1Type(enum.IntEnum):
    # requests
    STATUS = 2
    ACCOUNT = 4
    SUBMIT = 6
    FAUCET = 8
    MINE = 10
    CHANNEL = 12
    SECRET = 14
    BLOCK = 16
    SUBSCRIBE = 18
    TRANSACTION = 20
    WAIT = 22
    PLASMA_CHAIN = 24
    PLASMA_BLOCK = 26
    PLASMA_EXIT = 28
    # responses and pushes
    ERROR = 100
    STATUS_RESULT = 102
    ACCOUNT_RESULT = 104
    SUBMIT_RESULT = 106
    HEIGHT_RESULT = 108
    CHANNEL_RESULT = 110
    SECRET_RESULT = 112
    BLOCK_RESULT = 114
    SUBSCRIBED = 116
    TRANSACTION_RESULT = 118
    BLOCK_NOTICE = 120
    PLASMA_CHAIN_RESULT = 122
    PLASMA_BLOCK_RESULT = 124
    PLASMA_EXIT_RESULT = 126


REQUESTS = MessageRegistry("l1 request", L1Type, max_message_size=MAX_REQUEST_SIZE)
RESPONSES = MessageRegistry("l1 response", L1Type, max_message_size=MAX_RESPONSE_SIZE)


class Request(Record):
    __slots__ = ()
    request_id: int


class Response(Record):
    __slots__ = ()
    request_id: int


@REQUESTS.message(L1Type.STATUS)
@dataclass(frozen=True, slots=True)
class StatusRequest(Request):
    request_id: int = wire(U32)


@REQUESTS.message(L1Type.ACCOUNT)
@dataclass(frozen=True, slots=True)
class AccountRequest(Request):
    request_id: int = wire(U32)
    address: Address = wire(BYTES32)


@REQUESTS.message(L1Type.SUBMIT)
@dataclass(frozen=True, slots=True)
class SubmitRequest(Request):
    request_id: int = wire(U32)
    transaction: SignedTransaction = wire(Nested(SignedTransaction))
    wait: bool = wire(BOOL)  # answer only once the block holding it is durable


@REQUESTS.message(L1Type.FAUCET)
@dataclass(frozen=True, slots=True)
class FaucetRequest(Request):
    request_id: int = wire(U32)
    address: Address = wire(BYTES32)
    amount: int = wire(U64)
    wait: bool = wire(BOOL)


@REQUESTS.message(L1Type.MINE)
@dataclass(frozen=True, slots=True)
class MineRequest(Request):
    request_id: int = wire(U32)
    count: int = wire(U32)


@REQUESTS.message(L1Type.CHANNEL)
@dataclass(frozen=True, slots=True)
class ChannelRequest(Request):
    request_id: int = wire(U32)
    channel_id: ChannelId = wire(BYTES32)


@REQUESTS.message(L1Type.SECRET)
@dataclass(frozen=True, slots=True)
class SecretRequest(Request):
    request_id: int = wire(U32)
    secrethash: SecretHash = wire(BYTES32)


@REQUESTS.message(L1Type.BLOCK)
@dataclass(frozen=True, slots=True)
class BlockRequest(Request):
    request_id: int = wire(U32)
    height: int = wire(U64)


@REQUESTS.message(L1Type.SUBSCRIBE)
@dataclass(frozen=True, slots=True)
class SubscribeRequest(Request):
    request_id: int = wire(U32)
    from_height: int = wire(U64)


@REQUESTS.message(L1Type.TRANSACTION)
@dataclass(frozen=True, slots=True)
class TransactionRequest(Request):
    request_id: int = wire(U32)
    tx_hash: TxHash = wire(BYTES32)


@RESPONSES.message(L1Type.ERROR)
@dataclass(frozen=True, slots=True)
class ErrorResponse(Response):
    request_id: int = wire(U32)
    code: str = wire(Text(64))
    message: str = wire(Text(4096))


@RESPONSES.message(L1Type.STATUS_RESULT)
@dataclass(frozen=True, slots=True)
class StatusResult(Response):
    request_id: int = wire(U32)
    chain_id: ChainId = wire(BYTES32)
    height: int = wire(U64)
    head_hash: BlockHash = wire(BYTES32)
    block_time_ms: int = wire(U64)  # 0: blocks only on `mine`
    dev: bool = wire(BOOL)
    min_fee: int = wire(U64)
    pending_transactions: int = wire(U64)
    supply: int = wire(U64)
    burned: int = wire(U64)
    contract_holdings: int = wire(U64)


@RESPONSES.message(L1Type.ACCOUNT_RESULT)
@dataclass(frozen=True, slots=True)
class AccountResult(Response):
    """Balance and nonce as of the head block, and the nonce to use for a new transaction."""

    request_id: int = wire(U32)
    balance: int = wire(U64)
    nonce: int = wire(U64)
    pending_balance: int = wire(U64)
    pending_nonce: int = wire(U64)


@RESPONSES.message(L1Type.SUBMIT_RESULT)
@dataclass(frozen=True, slots=True)
class SubmitResult(Response):
    request_id: int = wire(U32)
    tx_hash: TxHash = wire(BYTES32)
    block: int = wire(U64)  # the block it is (or will be) included in
    included: bool = wire(BOOL)  # True once that block is durable


@REQUESTS.message(L1Type.WAIT)
@dataclass(frozen=True, slots=True)
class WaitRequest(Request):
    """Answered once the head reaches `height` (a durable block)."""

    request_id: int = wire(U32)
    height: int = wire(U64)


@RESPONSES.message(L1Type.HEIGHT_RESULT)
@dataclass(frozen=True, slots=True)
class HeightResult(Response):
    """The head after `mine` or `wait`."""

    request_id: int = wire(U32)
    height: int = wire(U64)


@RESPONSES.message(L1Type.CHANNEL_RESULT)
@dataclass(frozen=True, slots=True)
class ChannelResult(Response):
    request_id: int = wire(U32)
    channel: ChannelRecord | None = wire(Optional(Nested(ChannelRecord)))
    height: int = wire(U64)  # the head the record is as of


@RESPONSES.message(L1Type.SECRET_RESULT)
@dataclass(frozen=True, slots=True)
class SecretResult(Response):
    request_id: int = wire(U32)
    registered_block: int | None = wire(Optional(U64))


@RESPONSES.message(L1Type.BLOCK_RESULT)
@dataclass(frozen=True, slots=True)
class BlockResult(Response):
    request_id: int = wire(U32)
    block: Block = wire(Nested(Block))


@RESPONSES.message(L1Type.SUBSCRIBED)
@dataclass(frozen=True, slots=True)
class Subscribed(Response):
    request_id: int = wire(U32)
    height: int = wire(U64)  # the head when the subscription started


@RESPONSES.message(L1Type.TRANSACTION_RESULT)
@dataclass(frozen=True, slots=True)
class TransactionResult(Response):
    request_id: int = wire(U32)
    block: int | None = wire(Optional(U64))  # None: unknown or not yet included
    pending: bool = wire(BOOL)


@RESPONSES.message(L1Type.BLOCK_NOTICE)
@dataclass(frozen=True, slots=True)
class BlockNotice(Record):
    """Pushed to a subscriber once a block is durable: its header and its contract events."""

    header: BlockHeader = wire(Nested(BlockHeader))
    events: tuple[Event, ...] = wire(MessageList(EVENTS, MAX_EVENTS_PER_BLOCK))


# -- Plasma root contract queries ------------------------------------------------------------


@REQUESTS.message(L1Type.PLASMA_CHAIN)
@dataclass(frozen=True, slots=True)
class PlasmaChainRequest(Request):
    request_id: int = wire(U32)
    plasma_id: PlasmaId = wire(BYTES32)


@REQUESTS.message(L1Type.PLASMA_BLOCK)
@dataclass(frozen=True, slots=True)
class PlasmaBlockRequest(Request):
    """The commitment of child block `blknum` (operator or deposit block)."""

    request_id: int = wire(U32)
    plasma_id: PlasmaId = wire(BYTES32)
    blknum: int = wire(U64)


@REQUESTS.message(L1Type.PLASMA_EXIT)
@dataclass(frozen=True, slots=True)
class PlasmaExitRequest(Request):
    request_id: int = wire(U32)
    plasma_id: PlasmaId = wire(BYTES32)
    utxo_pos: int = wire(U64)


@RESPONSES.message(L1Type.PLASMA_CHAIN_RESULT)
@dataclass(frozen=True, slots=True)
class PlasmaChainResult(Response):
    request_id: int = wire(U32)
    chain: PlasmaChainInfo | None = wire(Optional(Nested(PlasmaChainInfo)))
    height: int = wire(U64)  # the head the record is as of


@RESPONSES.message(L1Type.PLASMA_BLOCK_RESULT)
@dataclass(frozen=True, slots=True)
class PlasmaBlockResult(Response):
    request_id: int = wire(U32)
    block: BlockCommit | None = wire(Optional(Nested(BlockCommit)))
    height: int = wire(U64)


@RESPONSES.message(L1Type.PLASMA_EXIT_RESULT)
@dataclass(frozen=True, slots=True)
class PlasmaExitResult(Response):
    request_id: int = wire(U32)
    exit: ExitRecord | None = wire(Optional(Nested(ExitRecord)))
    height: int = wire(U64)
