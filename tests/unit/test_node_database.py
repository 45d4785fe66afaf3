"""The node's SQLite store: a transaction whose COMMIT fails is rolled back, reported as a
StoreError, and leaves the store usable (the next step can still be written)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from p2pchan.errors import StoreError
from p2pchan.storage.db import NodeDatabase


def test_a_failed_commit_is_rolled_back_and_the_store_works_on(tmp_path: Path) -> None:
    database = NodeDatabase.open(tmp_path)
    try:

        def tables(connection: sqlite3.Connection) -> None:
            connection.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
            connection.execute(
                "CREATE TABLE child (parent INTEGER REFERENCES parent (id)"
                " DEFERRABLE INITIALLY DEFERRED)"
            )

        database.run_now(tables)
        # A deferred foreign key is checked at COMMIT: the COMMIT itself fails.
        with pytest.raises(StoreError, match="FOREIGN KEY"):
            database.run_now(lambda c: c.execute("INSERT INTO child VALUES (7)"))
        database.run_now(lambda c: c.execute("INSERT INTO parent VALUES (1)"))
        rows = database.run_now(
            lambda c: c.execute(
                "SELECT (SELECT count(*) FROM child), count(*) FROM parent"
            ).fetchone()
        )
        assert rows == (0, 1)
    finally:
        database.close()
