"""The one error tree of p2pchan.

Every failure we raise on purpose is a `P2pchanError`. The subclass says whose fault it was:
a `RemoteProtocolError` is the peer's (score it, drop the connection), a `LocalProtocolError` is
ours (a bug or a misuse of the API), a `UserError` is the operator's (bad CLI input, a key file
with wrong permissions) and is shown to them as one line.
"""

from __future__ import annotations


class P2pchanError(Exception):
    """Base of every error p2pchan raises on purpose."""


class ProtocolError(P2pchanError):
    """A message broke the protocol."""


class LocalProtocolError(ProtocolError):
    """We were asked to do something the protocol does not allow."""


class RemoteProtocolError(ProtocolError):
    """The other side sent something malformed or not allowed."""


class GossipRefused(ProtocolError):
    """Gossip not taken, through no proven fault of its sender: stale, a duplicate, or about a
    channel layer 1 shows closed a moment before the sender saw it. Dropped, not scored.
    `code` is a stable machine-readable reason."""

    points = 0
    budgeted = False

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class InvalidGossip(GossipRefused, RemoteProtocolError):
    """Gossip refused as its sender's fault, which costs it `points`. A `budgeted` fault is one
    an honest peer commits now and then by timing (it relayed what it saw a block before us):
    scored only beyond a small budget per minute."""

    def __init__(self, code: str, message: str, points: int, *, budgeted: bool = False) -> None:
        super().__init__(code, message)
        self.points = points
        self.budgeted = budgeted


class CryptoError(P2pchanError):
    """A signature, key or ciphertext failed a check."""


class KeyFileError(CryptoError):
    """A key file is missing, malformed or readable by others."""


class ChainError(P2pchanError):
    """Layer 1 refused a call. `code` is a stable machine-readable reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class PlasmaError(P2pchanError):
    """A Plasma operator or watcher refused a transaction, a block or a request.

    `code` is a stable machine-readable reason, as for `ChainError`.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class StoreError(P2pchanError):
    """Durable storage is unreadable, corrupt or could not be written."""


class UserError(P2pchanError):
    """Bad input from the operator: shown as one line, the CLI exits non-zero."""


class NoRoute(UserError):
    """No route fits the payment. `reason` is a stable machine-readable code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"no route: {message}")
        self.reason = reason
        self.message = message
