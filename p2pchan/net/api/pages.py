"""The size of a page of history (`payments`, `invoices`): what the RPC server allows and the
CLI offers. Apart from `payments.py`, so the CLI reads it without importing the node."""

from __future__ import annotations

DEFAULT_PAGE = 100  # records per page of `payments` / `invoices` unless the caller says
MAX_PAGE = 10_000
