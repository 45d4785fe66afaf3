"""Fixtures shared by every test layer: an in-process layer-1 server and child processes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import structlog
import trio

from p2pchan.l1.server import L1Address, serve_l1
from p2pchan.l1.service import ChainService
from p2pchan_cli.processes import ChildProcess


@dataclass
class RunningL1:
    service: ChainService
    address: L1Address


@pytest.fixture(autouse=True)
def _default_logging() -> Iterator[None]:
    """Each test starts with structlog's defaults: a test that runs the CLI in-process
    configures logging (at warning) for the whole process, which would hide the info lines
    later tests capture."""
    yield
    structlog.reset_defaults()


@pytest.fixture
async def l1_server(tmp_path: Path) -> AsyncIterator[RunningL1]:
    """A dev chain with blocks on demand, served on a free loopback port in this test's run."""
    service = ChainService.open(tmp_path / "l1", block_time=0, dev=True)
    async with trio.open_nursery() as nursery:
        address = await nursery.start(serve_l1, service, "127.0.0.1", 0)
        yield RunningL1(service, address)
        nursery.cancel_scope.cancel()
    service.close()


class ProcessRegistry:
    """Tracks child processes; whatever a test started is killed when it ends."""

    def __init__(self) -> None:
        self.children: list[ChildProcess] = []

    def add(self, child: ChildProcess) -> ChildProcess:
        self.children.append(child)
        return child

    async def kill_all(self) -> None:
        for child in self.children:
            await child.stop(grace_period=0)


@pytest.fixture
async def processes() -> AsyncIterator[ProcessRegistry]:
    registry = ProcessRegistry()
    try:
        yield registry
    finally:
        await registry.kill_all()
