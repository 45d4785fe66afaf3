"""The layer-1 node's durable store: the genesis file and an append-only, fsynced block log.

Each log record is `length (4 bytes BE) || crc32(length) (4) || sha256(payload) || payload`.
`append` returns only once the record is on disk (fdatasync), so a block reported as included
survives kill -9. On open, a
record cut short or failing its checksum at the very end of the log (or followed only by zeros) is
a torn write: it is logged and truncated away. Any other bad record is corruption, and opening
fails rather than dropping acknowledged blocks.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import structlog

from p2pchan.crypto.hashing import sha256
from p2pchan.errors import StoreError
from p2pchan.files import DatadirLock, fsync_directory, write_file_durably

log = structlog.get_logger(__name__)

GENESIS_FILE = "genesis.bin"
LOG_FILE = "blocks.log"
_HEADER = struct.Struct(">II")  # payload length, crc32 of those 4 length bytes
_LENGTH_SIZE = 4
_RECORD_HEADER = _HEADER.size + 32  # then sha256(payload), then the payload
MAX_RECORD = 256 * 1024 * 1024


def _only_zeros(data: bytes, offset: int) -> bool:
    return data.count(0, offset) == len(data) - offset


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
        """Parse records from the start; return them and the end of the last intact one.

        Only the last write can be torn, so a damaged record that reaches the end of the file
        (or is followed only by zeros, as a power loss can leave) ends the log; any other damage
        is corruption. The header checksum tells a torn payload from a corrupted length.
        """
        records: list[bytes] = []
        self._spans = []
        offset = 0
        size = len(data)
        while offset < size:
            if size - offset < _RECORD_HEADER:
                break  # a torn header
            length, header_check = _HEADER.unpack_from(data, offset)
            if zlib.crc32(data[offset : offset + _LENGTH_SIZE]) != header_check:
                if _only_zeros(data, offset):
                    break  # a zero-filled tail
                raise self._corrupt(offset, "header checksum")
            if length > MAX_RECORD:
                raise self._corrupt(offset, f"length {length}")
            start = offset + _RECORD_HEADER
            end = start + length
            if end > size:
                break  # a torn payload: the length was written, the payload only in part
            payload = data[start:end]
            if sha256(payload) != data[offset + _HEADER.size : start]:
                if end == size or _only_zeros(data, end):
                    break  # the last record was torn while being written
                raise self._corrupt(offset, "payload checksum")
            records.append(payload)
            self._spans.append((start, length))
            offset = end
        return records, offset

    def _corrupt(self, offset: int, what: str) -> StoreError:
        return StoreError(
            f"{self.path}: the record at byte {offset} fails its {what} and is not the last "
            "write; the log is corrupt"
        )

    def append(self, payload: bytes) -> None:
        """Append one record and return once it is durable."""
        if self._fd is None:
            raise StoreError("block log is not open")
        if len(payload) > MAX_RECORD:
            raise StoreError(f"record of {len(payload)} bytes is too large")
        length = len(payload).to_bytes(_LENGTH_SIZE, "big")
        record = length + zlib.crc32(length).to_bytes(4, "big") + sha256(payload) + payload
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
