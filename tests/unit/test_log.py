"""Logging helpers: a repeated condition is told once per interval with how often it was held
back, and told again at once after it cleared; console lines carry short node ids; the logging a
command chooses holds even when structlog is imported only later."""

from __future__ import annotations

import json
import subprocess
import sys

from p2pchan.log import Throttle, shorten_ids


def test_a_repeated_event_goes_through_once_per_interval_with_a_count() -> None:
    now = [0.0]
    throttle = Throttle(interval=60, clock=lambda: now[0])
    assert throttle.allow("l1_down") == 0
    for second in (0.5, 1.0, 30.0):
        now[0] = second
        assert throttle.allow("l1_down") is None
    assert throttle.allow("peer:b2") == 0  # another key has its own interval
    now[0] = 60.0
    assert throttle.allow("l1_down") == 3  # the three held back
    assert throttle.allow("l1_down") is None
    throttle.reset("l1_down")  # layer 1 came back: the next failure is news
    assert throttle.allow("l1_down") == 0


def test_many_keys_are_forgotten_once_quiet() -> None:
    now = [0.0]
    throttle = Throttle(interval=10, clock=lambda: now[0])
    for key in range(Throttle.MAX_KEYS + 1):
        throttle.allow(f"duty:{key}")
    now[0] = 20.0
    assert throttle.allow("another") == 0
    assert len(throttle) == 1  # only the new one is still remembered


def test_console_lines_carry_short_node_ids() -> None:
    node, peer = "a1" * 32, "b2" * 32
    event = shorten_ids(None, "info", {"event": "peer_connected", "node": node, "peer": peer})
    assert event == {"event": "peer_connected", "node": "a1a1a1a1", "peer": "b2b2b2b2"}
    assert shorten_ids(None, "info", {"event": "x", "node": "l1"}) == {"event": "x", "node": "l1"}


LATE_IMPORT = """
import sys
from p2pchan.log import configure_logging
configure_logging("json", "warning")
configure_logging("json", "info")  # a server raises the level after the root command set it
assert "structlog" not in sys.modules, "configure_logging imported structlog"
import structlog
log = structlog.get_logger("test")
log.debug("not_shown")
log.info("shown", secret="s3cret")
assert not any(type(f).__name__ == "_ConfigureOnImport" for f in sys.meta_path)
assert type(structlog.__loader__).__name__ == "SourceFileLoader"
"""


def test_logging_chosen_before_structlog_is_imported_applies_once_it_is() -> None:
    result = subprocess.run(
        [sys.executable, "-c", LATE_IMPORT], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""  # structlog's default would print to stdout
    (line,) = result.stderr.splitlines()
    logged = json.loads(line)
    assert (logged["event"], logged["level"], logged["secret"]) == ("shown", "info", "<redacted>")
