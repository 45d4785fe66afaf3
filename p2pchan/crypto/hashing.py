"""SHA-256 helpers: every hash in p2pchan is SHA-256."""

from __future__ import annotations

import hashlib


def sha256(*parts: bytes) -> bytes:
    """SHA-256 of the concatenation of `parts`."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.digest()
