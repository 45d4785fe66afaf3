"""The operator's durable store: which child chain it runs, its blocks and the confirmations.

Files in the operator's data dir: `node.key` (its identity, as `node init` makes it), `plasma.bin`
(the layer-1 chain id, the plasma id and the nonce of the creating transaction, written before
that transaction is sent, so a crash never creates a second chain unnoticed), `LOCK`, and
`plasma.log`, an append-only log in layer 1's record format (`p2pchan.l1.store.BlockLog`:
length, crc32 of the length, sha256 of the payload, payload; each append fdatasync'ed; a torn
tail dropped on open). A record is msgpack `[1, withheld, block bytes]` for a block, or
`[2, tx_hash, owner, signature]` for a relayed confirmation.

A block is appended (and on disk) before its root is submitted to layer 1: a block whose root
reached layer 1 is never lost, even to kill -9. Not thread-safe: the shell serialises writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from p2pchan.errors import RemoteProtocolError, StoreError
from p2pchan.files import DatadirLock, write_file_durably
from p2pchan.l1.store import BlockLog
from p2pchan.types import Address, ChainId, PlasmaId
from p2pchan.wire.codec import pack, unpack
from p2pchan.wire.fields import BOOL, BYTES32, SIGNATURE, U8, U64
from p2pchan.wire.plasma import Confirmation
from p2pchan.wire.records import Record, wire

META_FILE = "plasma.bin"
LOG_FILE = "plasma.log"
_BLOCK, _CONFIRMATION = 1, 2
_META_VERSION = 1
MAX_RECORD = 128 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class PlasmaMeta(Record):
    version: int = wire(U8)
    chain_id: ChainId = wire(BYTES32)
    plasma_id: PlasmaId = wire(BYTES32)
    create_nonce: int = wire(U64)
    created: bool = wire(BOOL)  # layer 1 has been seen to hold the chain


@dataclass(frozen=True, slots=True)
class StoredBlock:
    blknum: int
    data: bytes
    withheld: bool


@dataclass(frozen=True, slots=True)
class StoredConfirmation:
    tx_hash: bytes
    confirmation: Confirmation


def _decode_record(payload: bytes) -> tuple[int, list[object]]:
    value = unpack(payload, max_len=MAX_RECORD)
    if type(value) is not list or not value or type(value[0]) is not int:
        raise RemoteProtocolError("a record is [kind, ...]")
    return value[0], value[1:]


def _block_number(data: bytes) -> int:
    """The block number of an encoded block (its second field), without decoding it all."""
    value = unpack(data, max_len=MAX_RECORD)
    if type(value) is not list or len(value) != 4:
        raise RemoteProtocolError("a block is [plasma_id, blknum, transactions, signature]")
    return int(U64.check(value[1], "block.blknum"))


class OperatorStore:
    def __init__(self, datadir: Path) -> None:
        self.datadir = datadir
        self.lock = DatadirLock(datadir)
        self.lock.acquire()
        self.log = BlockLog(datadir / LOG_FILE)
        self._index: dict[int, int] = {}  # blknum -> record index
        self._records = 0

    @classmethod
    def open(
        cls, datadir: Path
    ) -> tuple[OperatorStore, list[StoredBlock], list[StoredConfirmation]]:
        """Lock the data dir and read every block and confirmation, in the order written."""
        store = cls(datadir)
        try:
            blocks, confirmations = store._load()
        except BaseException:
            store.close()
            raise
        return store, blocks, confirmations

    def _load(self) -> tuple[list[StoredBlock], list[StoredConfirmation]]:
        blocks: list[StoredBlock] = []
        confirmations: list[StoredConfirmation] = []
        for index, payload in enumerate(self.log.open()):
            try:
                kind, fields = _decode_record(payload)
                if kind == _BLOCK and len(fields) == 2:
                    withheld = BOOL.check(fields[0], "record.withheld")
                    data = fields[1]
                    if type(data) is not bytes:
                        raise RemoteProtocolError("a block record holds the block's bytes")
                    blknum = _block_number(data)
                    self._index[blknum] = index
                    blocks.append(StoredBlock(blknum, data, withheld))
                elif kind == _CONFIRMATION and len(fields) == 3:
                    tx_hash = BYTES32.check(fields[0], "record.tx_hash")
                    owner = Address(BYTES32.check(fields[1], "record.owner"))
                    signature = SIGNATURE.check(fields[2], "record.signature")
                    confirmations.append(
                        StoredConfirmation(tx_hash, Confirmation(owner, signature))
                    )
                else:
                    raise RemoteProtocolError(f"unknown record kind {kind}")
            except RemoteProtocolError as error:
                raise StoreError(
                    f"{self.log.path}: record {index} is unreadable: {error}"
                ) from None
            self._records = index + 1
        return blocks, confirmations

    # -- meta -------------------------------------------------------------------------------

    @property
    def meta_path(self) -> Path:
        return self.datadir / META_FILE

    def read_meta(self) -> PlasmaMeta | None:
        try:
            data = self.meta_path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            meta = PlasmaMeta.from_wire(unpack(data, max_len=1024))
        except RemoteProtocolError as error:
            raise StoreError(f"{self.meta_path} is unreadable: {error}") from None
        if meta.version != _META_VERSION:
            raise StoreError(f"{self.meta_path} has unknown version {meta.version}")
        return meta

    def write_meta(self, meta: PlasmaMeta) -> None:
        write_file_durably(self.meta_path, pack(meta.to_wire()))

    # -- the log ----------------------------------------------------------------------------

    def append_block(self, blknum: int, data: bytes, *, withheld: bool) -> None:
        """Append a block and return once it is on disk."""
        self.log.append(pack([_BLOCK, withheld, data]))
        self._index[blknum] = self._records
        self._records += 1

    def append_confirmation(self, tx_hash: bytes, confirmation: Confirmation) -> None:
        self.log.append(pack([_CONFIRMATION, tx_hash, confirmation.owner, confirmation.signature]))
        self._records += 1

    def read_block(self, blknum: int) -> bytes | None:
        """A stored block's bytes, read back from disk (None if there is no such block)."""
        index = self._index.get(blknum)
        if index is None:
            return None
        _, fields = _decode_record(self.log.read(index))
        data = fields[1]
        assert type(data) is bytes
        return data

    def close(self) -> None:
        self.log.close()
        self.lock.release()
