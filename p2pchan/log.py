"""Logging helpers. The library only logs; the CLI calls `configure_logging` once.

Console output on a terminal, JSON lines otherwise. `bind_process` puts the node id (or another
process label) on every line. A last-line-of-defence processor masks any field whose name says it
is secret, so key material can never reach a log even by mistake.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
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
