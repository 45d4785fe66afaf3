"""The layer-1 node's durable store: the genesis file and an append-only, fsynced block log.

Each log record is `length (4 bytes BE) || sha256(payload) || payload`. `append` returns only once
the record is on disk (fdatasync), so a block reported as included survives kill -9. On open, a
record cut short or failing its checksum at the very end of the log is a torn write: it is logged
and truncated away. A bad record with more data after it is corruption, and opening fails.
"""

from __future__ import annotations

import fcntl
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import structlog

from p2pchan.crypto.hashing import sha256
from p2pchan.errors import StoreError

log = structlog.get_logger(__name__)

GENESIS_FILE = "genesis.bin"
LOG_FILE = "blocks.log"
LOCK_FILE = "LOCK"
_LENGTH = struct.Struct(">I")
_RECORD_HEADER = _LENGTH.size + 32
MAX_RECORD = 256 * 1024 * 1024


def fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_durably(path: Path, data: bytes) -> None:
    """Write `path` atomically: a temporary file, fsync, rename, fsync the directory."""
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    fsync_directory(path.parent)


class BlockLog:
    """Append-only record log. Not thread-safe: one writer at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._spans: list[tuple[int, int]] = []  # (payload offset, length) of each record
        self._end = 0

    def open(self) -> list[bytes]:
        """Read every intact record, drop a torn tail, and open the log for appending."""
        created = not self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            if created:
                fsync_directory(self.path.parent)
            with open(fd, "rb", closefd=False) as file:
                data = file.read()
            records, good_end = self._scan(data)
            self._end = good_end
            if good_end != len(data):
                log.warning(
                    "block_log_torn_tail_dropped",
                    path=str(self.path),
                    dropped_bytes=len(data) - good_end,
                )
                os.ftruncate(fd, good_end)
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return records

    def _scan(self, data: bytes) -> tuple[list[bytes], int]:
        records: list[bytes] = []
        offset = 0
        while offset < len(data):
            if len(data) - offset < _RECORD_HEADER:
                break  # a torn header
            (length,) = _LENGTH.unpack_from(data, offset)
            end = offset + _RECORD_HEADER + length
            if length > MAX_RECORD:
                if end >= len(data):
                    break
                raise StoreError(f"{self.path}: record at byte {offset} has absurd length {length}")
            if end > len(data):
                break  # a torn payload
            digest = data[offset + _LENGTH.size : offset + _RECORD_HEADER]
            payload = data[offset + _RECORD_HEADER : end]
            if sha256(payload) != digest:
                if end == len(data):
                    break  # the last record was torn while being written
                raise StoreError(
                    f"{self.path}: record at byte {offset} fails its checksum and is followed by "
                    "more records; the log is corrupt"
                )
            records.append(payload)
            self._spans.append((offset + _RECORD_HEADER, length))
            offset = end
        return records, offset

    def append(self, payload: bytes) -> None:
        """Append one record and return once it is durable."""
        if self._fd is None:
            raise StoreError("block log is not open")
        if len(payload) > MAX_RECORD:
            raise StoreError(f"record of {len(payload)} bytes is too large")
        record = _LENGTH.pack(len(payload)) + sha256(payload) + payload
        try:
            written = os.write(self._fd, record)
            while written < len(record):
                written += os.write(self._fd, record[written:])
            os.fdatasync(self._fd)
        except OSError as error:
            raise StoreError(f"cannot write {self.path}: {error}") from error
        self._spans.append((self._end + _RECORD_HEADER, len(payload)))
        self._end += len(record)

    def read(self, index: int) -> bytes:
        """Record `index` (0-based), read back from disk."""
        if self._fd is None:
            raise StoreError("block log is not open")
        offset, length = self._spans[index]
        return os.pread(self._fd, length, offset)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class DatadirLock:
    """An exclusive lock on a data dir, so two processes never write the same files."""

    def __init__(self, datadir: Path) -> None:
        self.path = datadir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreError(f"{self.path.parent} is in use by another process") from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class ChainStore:
    """The files of a layer-1 data dir, locked against a second process."""

    def __init__(self, datadir: Path) -> None:
        self.datadir = datadir
        self.lock = DatadirLock(datadir)
        self.lock.acquire()
        self.log = BlockLog(datadir / LOG_FILE)

    @property
    def genesis_path(self) -> Path:
        return self.datadir / GENESIS_FILE

    def read_genesis(self) -> bytes | None:
        try:
            return self.genesis_path.read_bytes()
        except FileNotFoundError:
            return None

    def write_genesis(self, data: bytes) -> None:
        write_file_durably(self.genesis_path, data)

    def open_blocks(self) -> Iterator[bytes]:
        return iter(self.log.open())

    def append_block(self, data: bytes) -> None:
        self.log.append(data)

    def read_block(self, height: int) -> bytes:
        return self.log.read(height - 1)

    def close(self) -> None:
        self.log.close()
        self.lock.release()
