"""The node's durable store: SQLite in WAL mode with synchronous=FULL."""
