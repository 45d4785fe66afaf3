"""The node's standing connection to one Plasma operator (a `Link`, as to layer 1).

Callers share one pipelined `OperatorClient`; each call waits up to `timeout` seconds for a
connection and its answer, then raises `OperatorUnavailable`, so the watcher treats an operator
that is down, slow or silent alike (a block not served).
"""

from __future__ import annotations

from p2pchan.net.link import Link
from p2pchan.plasma.client import OperatorClient, OperatorUnavailable

RECONNECT = (0.1, 2.0)  # seconds: first and longest pause between attempts


class OperatorLink(Link[OperatorClient]):
    def __init__(self, host: str, port: int, *, timeout: float = 5.0) -> None:
        super().__init__(
            host,
            port,
            connect=OperatorClient.connect,
            failure=OperatorUnavailable,
            unavailable=lambda _: OperatorUnavailable(
                f"the operator at {host}:{port} did not answer in time"
            ),
            events="plasma_operator",
            timeout=timeout,
            reconnect=RECONNECT,
        )
