"""Captured log lines a test can wait for.

`structlog.testing.capture_logs` fills a list; a test that needs a line logged by another task
would have to poll that list. `watch_logs` captures the same lines into a `WatchedLogs` list
whose processor also wakes whoever waits in `wait_for`, so the test waits on the line itself.
Lines must be logged from trio's thread (every peer and server task is).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import trio
from structlog.testing import capture_logs
from structlog.typing import EventDict, Processor, WrappedLogger


class WatchedLogs(list[EventDict]):
    """The lines logged so far, in order, each with the fields its processors added."""

    def __init__(self) -> None:
        super().__init__()
        self._logged = trio.Event()

    def keep(self, _: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        """A processor: keep the line and wake the waiters (capture_logs then drops it)."""
        self.append(event_dict)
        self._logged.set()
        self._logged = trio.Event()
        return event_dict

    def events(self, name: str) -> list[EventDict]:
        return [entry for entry in self if entry["event"] == name]

    async def wait_for(
        self, name: str, where: Callable[[EventDict], bool] = lambda _: True
    ) -> EventDict:
        """The first line named `name` (for which `where` holds), once it is logged (under the
        caller's deadline)."""
        while True:
            for entry in self.events(name):
                if where(entry):
                    return entry
            await self._logged.wait()


@contextmanager
def watch_logs(*processors: Processor) -> Iterator[WatchedLogs]:
    """Capture every line logged inside the block, after `processors` (say, the context
    variables bound in the task that logged it)."""
    watched = WatchedLogs()
    with capture_logs(processors=[*processors, watched.keep]):
        yield watched
