"""Logging helpers. The library only logs; the CLI calls `configure_logging` once.

Console output on a terminal, JSON lines otherwise. `bind_process` puts the node id (or another
process label) on every line: whole in JSON, its first 8 hex digits on a console, where a line
must stay readable. A last-line-of-defence processor masks any field whose name says it is
secret, so key material can never reach a log even by mistake.

structlog is configured the moment it is imported, not before: importing it costs about 60 ms
(it brings rich and asyncio along), and a client command such as `p2pchan payments` never logs,
so it never imports structlog. `configure_logging` therefore configures at once when structlog
is loaded, and otherwise right after the first `import structlog`, wherever it happens (a
one-shot import hook), so no line is ever written with structlog's defaults.

`Throttle` keeps a condition that repeats (layer 1 unreachable, a peer that stays away, a chain
duty refused block after block) to one line per interval, with a count of the lines it held back.
"""

from __future__ import annotations

import importlib.machinery
import logging
import sys
import time
from collections.abc import Callable, MutableMapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal, cast

if TYPE_CHECKING:
    from importlib.abc import Loader

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
    """Log lines in `fmt` from `level` up: from now on if structlog is imported, else from the
    moment it is (see the module docstring)."""
    global _pending
    if "structlog" in sys.modules:
        _pending = None
        _configure(fmt, level)
        return
    if _pending is None:
        sys.meta_path.insert(0, _ConfigureOnImport())
    _pending = (fmt, level)


_pending: tuple[LogFormat, str] | None = None  # chosen before structlog was imported


# Neither class derives from `importlib.abc`: importing that costs 10-30 ms, and the import
# system needs only these methods.
class _ConfigureOnImport:
    """A `sys.meta_path` finder: finds structlog as the other finders do, and has it configured
    once it has been executed."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "structlog":
            return None
        import importlib.util  # only now: most commands never get here

        sys.meta_path.remove(self)  # one shot; the search below must not find this finder
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = cast("Loader", _ThenConfigure(spec.loader))
        return spec


class _ThenConfigure:
    """Loads the module with its own loader, puts that loader back, then configures."""

    def __init__(self, loader: Loader) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = self.loader
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        global _pending
        if _pending is not None:
            fmt, level = _pending
            _pending = None
            _configure(fmt, level)


def _configure(fmt: LogFormat, level: str) -> None:
    import structlog

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
    import structlog  # see the module docstring

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
