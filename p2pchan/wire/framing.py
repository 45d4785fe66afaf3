"""Length-prefixed framing for plaintext streams (the layer-1 API).

A frame is a 4-byte big-endian body length, then the body. `FrameDecoder` is sans-IO: feed it
bytes as they arrive and take out complete bodies; a length over the limit is the sender's fault
and raises `RemoteProtocolError` before any of that body is buffered.
"""

from __future__ import annotations

import struct

from p2pchan.errors import LocalProtocolError, RemoteProtocolError

_HEADER = struct.Struct(">I")
HEADER_SIZE = _HEADER.size


def frame(body: bytes, *, max_size: int) -> bytes:
    if len(body) > max_size:
        raise LocalProtocolError(f"frame of {len(body)} bytes exceeds {max_size}")
    return _HEADER.pack(len(body)) + body


class FrameDecoder:
    def __init__(self, *, max_size: int) -> None:
        self.max_size = max_size
        self._buffer = bytearray()
        self._want: int | None = None

    @property
    def buffered(self) -> int:
        """Bytes not yet returned as a frame (non-zero at EOF means a torn frame)."""
        # Once a header is parsed it leaves the buffer; it still belongs to an unfinished frame.
        return len(self._buffer) + (HEADER_SIZE if self._want is not None else 0)

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return every body now complete, in order."""
        self._buffer += data
        frames: list[bytes] = []
        buffer = self._buffer
        start = 0
        while True:
            if self._want is None:
                if len(buffer) - start < HEADER_SIZE:
                    break
                (length,) = _HEADER.unpack_from(buffer, start)
                if length > self.max_size:
                    raise RemoteProtocolError(f"frame of {length} bytes exceeds {self.max_size}")
                self._want = length
                start += HEADER_SIZE
            if len(buffer) - start < self._want:
                break
            frames.append(bytes(buffer[start : start + self._want]))
            start += self._want
            self._want = None
        if start:
            del buffer[:start]
        return frames
