"""Fixtures for the network tests: peer managers over loopback TCP or in memory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.net.peer_helpers import MemoryNetwork, Network, open_network


@pytest.fixture
async def network(tmp_path: Path) -> AsyncIterator[Network]:
    """Peer managers on loopback TCP: real sockets, real time."""
    async with open_network(tmp_path) as net:
        yield net


@pytest.fixture
async def memory_network(tmp_path: Path) -> AsyncIterator[Network]:
    """Peer managers on an in-memory loopback: no real IO, so fit for the autojump clock."""
    async with open_network(tmp_path, MemoryNetwork()) as net:
        yield net
