"""The node's Plasma wallet in its database: joined chains, checked blocks, the user's outputs,
sent transactions, confirmations and exit requests.

The watcher machine lives in memory and is rebuilt on every start by replaying layer 1 from
the chain's creation; what it cannot learn again from layer 1 is here:

- every block it found valid (`plasma_blocks`, the bytes as served), so the replay re-checks
  the chain without the operator, who could refuse to serve an old block to a restarted node;
- the user's outputs with the transaction that made each and its Merkle proof
  (`plasma_outputs`): what an exit needs, the user's own record of its coins;
- the transactions the user signed and handed to the operator (`plasma_sent`): their inputs
  stay in flight until found in a valid block (`found`) or refused, so a restart never signs
  a double spend, and those not found yet are handed to the operator again;
- confirmations (`plasma_confirmations`), ours written before they are handed over
  (`delivered` = 0 until the operator holds them), others' as they are accepted;
- exits the user asked for (`plasma_exit_requests`), asked for again after a restart;
- and, in the chain's row, where the chain went bad: it stays bad whatever is served later.

Positions and amounts are u64, beyond SQLite's signed integers: positions are keys as 8 bytes
big-endian (so they sort), amounts stay inside msgpack records.
"""

from __future__ import annotations

import sqlite3
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from p2pchan.errors import RemoteProtocolError, StoreError
from p2pchan.plasma.block import MAX_BLOCK_BYTES
from p2pchan.plasma.watcher import (
    PersistBlock,
    PersistConfirmation,
    PersistOutput,
    WatcherOutput,
)
from p2pchan.types import Address, PlasmaId
from p2pchan.wire.codec import pack, unpack
from p2pchan.wire.fields import BYTES32, U16, U64, Bytes, Optional, Text
from p2pchan.wire.plasma import Confirmation, SignedPlasmaTx
from p2pchan.wire.records import Nested, Record, wire

Work = Callable[[sqlite3.Connection], None]
R = TypeVar("R", bound=Record)

MAX_ROW = 8192
_U64 = struct.Struct(">Q")


def position_key(position: int) -> bytes:
    return _U64.pack(position)


def _position(key: bytes) -> int:
    if len(key) != _U64.size:
        raise StoreError("corrupt output position in the node database")
    return int(_U64.unpack(bytes(key))[0])


def _decode(record: type[R], blob: bytes, what: str) -> R:
    try:
        return record.from_wire(unpack(bytes(blob), max_len=MAX_ROW), what)
    except RemoteProtocolError as error:
        raise StoreError(f"corrupt {what} in the node database: {error}") from None


# -- joined chains --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JoinedChain(Record):
    """A child chain this node watches, as `plasma join` found it (layer 1's record and the
    operator's address), and where it went bad, if it did."""

    plasma_id: PlasmaId = wire(BYTES32)
    operator: Address = wire(BYTES32)
    host: str = wire(Text(255))
    port: int = wire(U16)
    challenge_period: int = wire(U64)
    exit_bond: int = wire(U64)
    created_block: int = wire(U64)
    withhold_timeout: int = wire(U64)
    joined_ms: int = wire(U64)
    bad_block: int | None = wire(Optional(U64))
    bad_reason: str = wire(Text(1024))


def save_chain(chain: JoinedChain) -> Work:
    def work(connection: sqlite3.Connection) -> None:
        connection.execute(
            "INSERT OR REPLACE INTO plasma_chains (plasma_id, record) VALUES (?, ?)",
            (chain.plasma_id, pack(chain.to_wire())),
        )

    return work


def load_chains(connection: sqlite3.Connection) -> list[JoinedChain]:
    rows = connection.execute("SELECT plasma_id, record FROM plasma_chains")
    chains = []
    for plasma_id, blob in rows:
        chain = _decode(JoinedChain, blob, "plasma chain")
        if chain.plasma_id != plasma_id:
            raise StoreError("corrupt plasma chain in the node database: key mismatch")
        chains.append(chain)
    return sorted(chains, key=lambda chain: chain.joined_ms)


# -- what a step of the watcher stores ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredOutput(Record):
    """One of the user's outputs and what its exit needs (its confirmations apart)."""

    amount: int = wire(U64)
    signed: SignedPlasmaTx = wire(Nested(SignedPlasmaTx))
    proof: bytes = wire(Bytes(max_size=1024))


def write_watcher_outputs(plasma_id: PlasmaId, outputs: Iterable[WatcherOutput]) -> Work | None:
    """The `Persist*` records of one watcher step, as one piece of work for the step's
    transaction; None when the step stores nothing. (Its bad verdict goes in the chain's row,
    `save_chain`, in the same transaction.)"""
    blocks: list[tuple[bytes, bytes, bytes]] = []
    owned: list[tuple[bytes, bytes, bytes]] = []
    confirmations: list[tuple[bytes, bytes, bytes, bytes, int]] = []
    found: list[tuple[bytes, bytes]] = []
    for output in outputs:
        if isinstance(output, PersistBlock):
            block = output.block
            blocks.append((plasma_id, position_key(block.blknum), block.encode()))
        elif isinstance(output, PersistOutput):
            stored = StoredOutput(output.amount, output.signed, output.proof)
            owned.append((plasma_id, position_key(output.utxo_pos), pack(stored.to_wire())))
        elif isinstance(output, PersistConfirmation):
            confirmation = output.confirmation
            delivered = 0 if output.ours else 1
            confirmations.append(
                (plasma_id, output.tx_hash, confirmation.owner, confirmation.signature, delivered)
            )
            if output.ours:  # we confirm our own transactions once found in a valid block
                found.append((plasma_id, output.tx_hash))
    if not (blocks or owned or confirmations):
        return None

    def work(connection: sqlite3.Connection) -> None:
        execute = connection.executemany
        execute("INSERT OR IGNORE INTO plasma_blocks VALUES (?, ?, ?)", blocks)
        execute("INSERT OR IGNORE INTO plasma_outputs VALUES (?, ?, ?)", owned)
        # A confirmation already held keeps its row: ours stays delivered once delivered.
        execute("INSERT OR IGNORE INTO plasma_confirmations VALUES (?, ?, ?, ?, ?)", confirmations)
        execute("UPDATE plasma_sent SET found = 1 WHERE plasma_id = ? AND tx_hash = ?", found)

    return work


# -- the user's own actions -----------------------------------------------------------------


def record_sent(plasma_id: PlasmaId, signed: SignedPlasmaTx, now_ms: int) -> Work:
    """A transaction the user signed, stored before the operator sees it."""

    def work(connection: sqlite3.Connection) -> None:
        connection.execute(
            "INSERT OR IGNORE INTO plasma_sent VALUES (?, ?, ?, ?, 0)",
            (plasma_id, signed.tx_hash, pack(signed.to_wire()), now_ms),
        )

    return work


def forget_sent(plasma_id: PlasmaId, tx_hash: bytes) -> Work:
    """The operator refused it: its inputs are the user's to spend again."""

    def work(connection: sqlite3.Connection) -> None:
        connection.execute(
            "DELETE FROM plasma_sent WHERE plasma_id = ? AND tx_hash = ? AND found = 0",
            (plasma_id, tx_hash),
        )

    return work


def mark_delivered(plasma_id: PlasmaId, tx_hash: bytes, owner: Address) -> Work:
    def work(connection: sqlite3.Connection) -> None:
        connection.execute(
            "UPDATE plasma_confirmations SET delivered = 1 "
            "WHERE plasma_id = ? AND tx_hash = ? AND owner = ?",
            (plasma_id, tx_hash, owner),
        )

    return work


def request_exits(plasma_id: PlasmaId, positions: Iterable[int]) -> Work:
    rows = [(plasma_id, position_key(position)) for position in positions]

    def work(connection: sqlite3.Connection) -> None:
        connection.executemany("INSERT OR IGNORE INTO plasma_exit_requests VALUES (?, ?)", rows)

    return work


def forget_exit_requests(plasma_id: PlasmaId, positions: Iterable[int]) -> Work:
    rows = [(plasma_id, position_key(position)) for position in positions]

    def work(connection: sqlite3.Connection) -> None:
        connection.executemany(
            "DELETE FROM plasma_exit_requests WHERE plasma_id = ? AND utxo_pos = ?", rows
        )

    return work


# -- loading --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredWallet:
    """What a restart hands the watcher machine (`RestoreWallet`) and its shell."""

    sent: tuple[SignedPlasmaTx, ...]  # not found in a valid block yet
    confirmations: tuple[tuple[bytes, Confirmation], ...]
    undelivered: tuple[tuple[bytes, Confirmation], ...]  # ours, not yet held by the operator
    exit_requests: tuple[int, ...]
    stored_blocks: frozenset[int]


def load_wallet(connection: sqlite3.Connection, plasma_id: PlasmaId) -> StoredWallet:
    sent = tuple(
        _decode(SignedPlasmaTx, blob, "plasma transaction")
        for (blob,) in connection.execute(
            "SELECT tx FROM plasma_sent WHERE plasma_id = ? AND found = 0 ORDER BY created_ms",
            (plasma_id,),
        )
    )
    confirmations = []
    undelivered = []
    rows = connection.execute(
        "SELECT tx_hash, owner, signature, delivered FROM plasma_confirmations WHERE plasma_id = ?",
        (plasma_id,),
    )
    for tx_hash, owner, signature, delivered in rows:
        if len(tx_hash) != 32 or len(owner) != 32 or len(signature) != 64:
            raise StoreError("corrupt plasma confirmation in the node database")
        entry = (bytes(tx_hash), Confirmation(Address(bytes(owner)), bytes(signature)))
        confirmations.append(entry)
        if not delivered:
            undelivered.append(entry)
    requests = tuple(
        _position(key)
        for (key,) in connection.execute(
            "SELECT utxo_pos FROM plasma_exit_requests WHERE plasma_id = ?", (plasma_id,)
        )
    )
    blocks = frozenset(
        _position(key)
        for (key,) in connection.execute(
            "SELECT blknum FROM plasma_blocks WHERE plasma_id = ?", (plasma_id,)
        )
    )
    return StoredWallet(sent, tuple(confirmations), tuple(undelivered), requests, blocks)


def read_block(connection: sqlite3.Connection, plasma_id: PlasmaId, blknum: int) -> bytes | None:
    row = connection.execute(
        "SELECT block FROM plasma_blocks WHERE plasma_id = ? AND blknum = ?",
        (plasma_id, position_key(blknum)),
    ).fetchone()
    if row is None:
        return None
    if len(row[0]) > MAX_BLOCK_BYTES:
        raise StoreError(f"corrupt plasma block {blknum} in the node database")
    return bytes(row[0])


def list_outputs(
    connection: sqlite3.Connection, plasma_id: PlasmaId
) -> list[tuple[int, StoredOutput]]:
    """Every output the user ever had on this chain, by position."""
    rows = connection.execute(
        "SELECT utxo_pos, record FROM plasma_outputs WHERE plasma_id = ? ORDER BY utxo_pos",
        (plasma_id,),
    )
    return [(_position(key), _decode(StoredOutput, blob, "plasma output")) for key, blob in rows]
