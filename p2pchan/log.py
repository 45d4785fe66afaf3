"""Logging helpers. The library only logs; the CLI calls `configure_logging` once.

Console output on a terminal, JSON lines otherwise. `bind_process` puts the node id (or another
process label) on every line: whole in JSON, its first 8 hex digits on a console, where a line
must stay readable. A last-line-of-defence processor masks any field whose name says it is
secret, so key material can never reach a log even by mistake.

`Throttle` keeps a condition that repeats (layer 1 unreachable, a peer that stays away, a chain
duty refused block after block) to one line per interval, with a count of the lines it held back.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, MutableMapping
from typing import Any, Literal

import structlog

LogFormat = Literal["auto", "console", "json"]

_SECRET_FIELDS = frozenset(
    {"secret", "preimage", "seed", "private_key", "secret_key", "key_material", "password"}
)


def _mask_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for name in _SECRET_FIELDS.intersection(event_dict):
        event_dict[name] = "<redacted>"
    return event_dict


SHORT_ID_FIELDS = ("node", "peer")
SHORT_ID_LENGTH = 8  # hex digits


def shorten_ids(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Console lines: node ids cut to their first digits (JSON lines keep them whole)."""
    for name in SHORT_ID_FIELDS:
        value = event_dict.get(name)
        if isinstance(value, str) and len(value) > SHORT_ID_LENGTH:
            event_dict[name] = value[:SHORT_ID_LENGTH]
    return event_dict


def configure_logging(fmt: LogFormat = "auto", level: str = "info") -> None:
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        if use_console
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _mask_secrets,
            *([shorten_ids] if use_console else []),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def bind_process(**fields: Any) -> None:
    """Fields every log line of this process carries (e.g. `node=<node id hex>`)."""
    structlog.contextvars.bind_contextvars(**fields)


class Throttle:
    """Lets each key through at most once per `interval` seconds.

    `allow(key)` returns None while the key is held back, else how many times it was held back
    since it last went through (log that as `repeated`); `reset(key)` once the condition is over,
    so its next occurrence is told at once. The clock is an argument, for tests.
    """

    def __init__(self, interval: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._held_back: dict[str, int] = {}

    MAX_KEYS = 1024  # beyond it, keys quiet for an interval are forgotten

    def allow(self, key: str) -> int | None:
        now = self._clock()
        if len(self._last) > self.MAX_KEYS:
            for old in [k for k, at in self._last.items() if now - at >= self.interval]:
                self.reset(old)
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._held_back[key] = self._held_back.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._held_back.pop(key, 0)

    def __len__(self) -> int:
        """How many keys it remembers."""
        return len(self._last)

    def reset(self, key: str) -> None:
        self._last.pop(key, None)
        self._held_back.pop(key, None)
