"""A benchmark's progress line: one line on stderr, rewritten in place while the run goes
through its stages, and nothing at all when stderr is not a terminal (a script reading `--json`
from stdout sees only the document; a log file gets no carriage returns)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressLine:
    def __init__(self, stream: TextIO | None = None, *, enabled: bool | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self.enabled = self._stream.isatty() if enabled is None else enabled
        self._started = time.monotonic()
        self._shown = False

    def show(self, text: str) -> None:
        """Replace the line with `text`, prefixed with the seconds since the run began."""
        if not self.enabled:
            return
        elapsed = time.monotonic() - self._started
        self._stream.write(f"\r\x1b[K[{elapsed:6.1f} s] {text}")
        self._stream.flush()
        self._shown = True

    def clear(self) -> None:
        """Erase the line (before the result is printed)."""
        if self.enabled and self._shown:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
            self._shown = False
