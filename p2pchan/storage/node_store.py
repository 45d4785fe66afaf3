"""The node's state in its database: channels, payments and invoices, chain facts; written
from the `Persist*` outputs of the node's transition, and loaded back into a `NodeState`.

`StoreBatch` collects everything one step of the node changed (channel states, payment and
invoice records, registered secrets, the last processed block) and writes it in a single
transaction: a payment's record always lands together with the channel state that carries it.

Payment events (created, then final) go to a journal, one row per step holding every event of
that step: writing a row per payment cost ~10 us each (two events per payment per node), and
updating rows keyed by random hashes dirtied a page per payment. A payment refused before it was
signed is journalled too, its creation and failure in one row, so its reason is kept. The
journal is only the hot path's buffer: `payment_history.compact` moves it into the indexed
payments table off the hot path, and everything that reads payments reads that table (start-up
also reads what is left of the journal, for the payments still pending: `load_pending`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from p2pchan.core.channel.state import Channel, ChannelConfig
from p2pchan.core.gossip.outputs import PersistGossip
from p2pchan.core.gossip.state import FeePolicy, GossipConfig
from p2pchan.core.invoice import decode_invoice
from p2pchan.core.outputs import (
    PersistChainView,
    PersistChannel,
    PersistForward,
    PersistForwardDone,
    PersistInvoice,
    PersistOnion,
    PersistOnionsExpired,
    PersistPayment,
    PersistPaymentOutcome,
    PersistProcessedBlock,
    PersistSecret,
)
from p2pchan.core.payment.records import InvoiceRecord, PaymentOutcome, PaymentRecord
from p2pchan.core.payment.state import (
    Forward,
    ForwardStatus,
    OpenInvoice,
    Payee,
    Payer,
    PayerStatus,
)
from p2pchan.core.state import NodeState
from p2pchan.crypto.keys import Identity
from p2pchan.errors import StoreError
from p2pchan.storage.channel_codec import decode_channel, encode_channel
from p2pchan.storage.gossip import load_chain_view, load_gossip, write_chain_view, write_gossip
from p2pchan.storage.payment_history import load_pending
from p2pchan.types import Address, ChainId, ChannelId, NodeId, Secret, SecretHash
from p2pchan.wire.codec import pack, unpack


@dataclass
class StoreBatch:
    channels: dict[ChannelId, Channel] = field(default_factory=dict)
    payments: dict[tuple[SecretHash, str], PaymentRecord] = field(default_factory=dict)
    outcomes: list[PaymentOutcome] = field(default_factory=list)
    invoices: dict[SecretHash, InvoiceRecord] = field(default_factory=dict)
    secrets: dict[SecretHash, int] = field(default_factory=dict)
    processed_block: int | None = None
    forwards: dict[SecretHash, Forward] = field(default_factory=dict)
    forwards_done: list[SecretHash] = field(default_factory=list)
    onions: list[tuple[bytes, int]] = field(default_factory=list)
    onions_expired: int | None = None
    chain_views: list[PersistChainView] = field(default_factory=list)
    gossip: list[PersistGossip] = field(default_factory=list)

    @classmethod
    def of(cls, outputs: Iterable[Any]) -> StoreBatch:
        """What a step's `Persist*` outputs write (the newest state of each channel)."""
        batch = cls()
        for output in outputs:
            kind = type(output)  # payment records first: a few per payment
            if kind is PersistPaymentOutcome:
                batch.outcomes.append(output.outcome)
            elif kind is PersistPayment:
                record = output.record
                batch.payments[(record.payment_hash, record.direction)] = record
            elif kind is PersistChannel:
                batch.channels[output.channel.channel_id] = output.channel
            elif kind is PersistInvoice:
                batch.invoices[output.record.payment_hash] = output.record
            elif kind is PersistSecret:
                batch.secrets[output.secrethash] = output.block
            elif kind is PersistProcessedBlock:
                batch.processed_block = output.height
            else:
                batch._add_network(output)
        return batch

    def _add_network(self, output: Any) -> None:
        """What multi-hop payments and gossip write (rarer than a direct payment's records)."""
        kind = type(output)
        if kind is PersistOnion:
            self.onions.append((output.tag, output.expiration))
        elif kind is PersistForward:
            self.forwards[output.forward.secrethash] = output.forward
            if output.forward.secrethash in self.forwards_done:
                self.forwards_done.remove(output.forward.secrethash)
        elif kind is PersistForwardDone:
            self.forwards.pop(output.record.payment_hash, None)
            self.forwards_done.append(output.record.payment_hash)
            self.payments[(output.record.payment_hash, "forward")] = output.record
            self.outcomes.append(output.outcome)
        elif kind is PersistOnionsExpired:
            self.onions_expired = output.height
        elif kind is PersistChainView:
            self.chain_views.append(output)
        elif kind is PersistGossip:
            self.gossip.append(output)
        else:
            raise TypeError(f"the store does not write {kind.__name__}")

    def __bool__(self) -> bool:
        return bool(
            self.channels
            or self.payments
            or self.outcomes
            or self.invoices
            or self.secrets
            or self.processed_block is not None
            or self.forwards
            or self.forwards_done
            or self.onions
            or self.onions_expired is not None
            or self.chain_views
            or self.gossip
        )


class ChannelTables:
    """Reads and writes channels, payments, invoices and chain facts."""

    def load(self, connection: sqlite3.Connection) -> list[Channel]:
        rows = connection.execute("SELECT state FROM channels")
        return [decode_channel(bytes(blob)) for (blob,) in rows]

    def write(self, connection: sqlite3.Connection, batch: StoreBatch) -> None:
        """Write a batch (inside the caller's transaction)."""
        for channel in batch.channels.values():
            self._write_channel(connection, channel)
        if batch.payments or batch.outcomes:
            events: list[list[object]] = [
                [
                    p.payment_hash,
                    p.direction,
                    p.peer,
                    p.channel_id,
                    p.amount,
                    p.fee,
                    p.status,
                    p.secret,
                    p.created_ms,
                    p.error,
                    [list(hop) for hop in p.route],
                ]
                for p in batch.payments.values()
            ]
            events += [
                [
                    o.payment_hash,
                    o.direction,
                    None,
                    None,
                    None,
                    None,
                    o.status,
                    o.secret,
                    o.finished_ms,
                    o.error,
                ]
                for o in batch.outcomes
            ]
            connection.execute("INSERT INTO payment_journal (events) VALUES (?)", (pack(events),))
        for invoice in batch.invoices.values():
            connection.execute(
                "INSERT INTO invoices (payment_hash, secret, amount, description, encoded, "
                "created_ms, expires_ms, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (payment_hash) DO UPDATE SET status = excluded.status",
                (
                    invoice.payment_hash,
                    invoice.secret,
                    invoice.amount,
                    invoice.description,
                    invoice.encoded,
                    invoice.created_ms,
                    invoice.expires_ms,
                    invoice.status,
                ),
            )
        if batch.secrets:
            connection.executemany(
                "INSERT OR IGNORE INTO chain_secrets (secrethash, block) VALUES (?, ?)",
                list(batch.secrets.items()),
            )
        if batch.processed_block is not None:
            connection.execute(
                "INSERT INTO meta (key, value) VALUES ('processed_block', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (batch.processed_block.to_bytes(8, "big"),),
            )
        self._write_network(connection, batch)

    def _write_network(self, connection: sqlite3.Connection, batch: StoreBatch) -> None:
        if batch.onions:
            connection.executemany(
                "INSERT OR IGNORE INTO onion_replays (tag, expiration) VALUES (?, ?)", batch.onions
            )
        if batch.onions_expired is not None:
            connection.execute(
                "DELETE FROM onion_replays WHERE expiration < ?", (batch.onions_expired,)
            )
        if batch.forwards:
            connection.executemany(
                "INSERT OR REPLACE INTO forwards (secrethash, record) VALUES (?, ?)",
                [(h, encode_forward(f)) for h, f in batch.forwards.items()],
            )
        if batch.forwards_done:
            connection.executemany(
                "DELETE FROM forwards WHERE secrethash = ?", [(h,) for h in batch.forwards_done]
            )
        for view in batch.chain_views:
            write_chain_view(view.view, view.changed)(connection)
        if batch.gossip:
            write_gossip(*batch.gossip)(connection)

    def _write_channel(self, connection: sqlite3.Connection, channel: Channel) -> None:
        connection.execute(
            "INSERT INTO channels (channel_id, partner, status, state) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (channel_id) DO UPDATE SET status = excluded.status, "
            "state = excluded.state",
            (channel.channel_id, channel.partner, str(channel.status), encode_channel(channel)),
        )


def load_processed_block(connection: sqlite3.Connection) -> int | None:
    row = connection.execute("SELECT value FROM meta WHERE key = 'processed_block'").fetchone()
    return None if row is None else int.from_bytes(bytes(row[0]), "big")


def load_chain_secrets(connection: sqlite3.Connection) -> dict[SecretHash, int]:
    rows = connection.execute("SELECT secrethash, block FROM chain_secrets")
    return {SecretHash(bytes(h)): block for h, block in rows}


def load_open_invoices(connection: sqlite3.Connection, now_ms: int) -> list[InvoiceRecord]:
    """The invoices that can still be paid (open, not expired)."""
    rows = connection.execute(
        f"SELECT {_INVOICE_COLUMNS} FROM invoices WHERE status = 'open' AND expires_ms > ?",
        (now_ms,),
    )
    return [_invoice(row) for row in rows]


_INVOICE_COLUMNS = (
    "payment_hash, secret, amount, description, encoded, created_ms, expires_ms, status"
)


def _invoice(row: tuple[Any, ...]) -> InvoiceRecord:
    return InvoiceRecord(SecretHash(bytes(row[0])), Secret(bytes(row[1])), *row[2:])


@dataclass(frozen=True)
class InvoiceQuery:
    """One page of `invoices`, newest first: at most `limit` below index `before` (none: from
    the newest), the first `offset` skipped, of one status (`expired`: open, but past its
    expiry) and whose payment hash starts with `hash_prefix` (lowercase hex) if given."""

    limit: int = 100
    before: int | None = None
    offset: int = 0
    status: str | None = None
    hash_prefix: str | None = None


def page_invoices(
    connection: sqlite3.Connection, query: InvoiceQuery, now_ms: int
) -> list[tuple[int, InvoiceRecord]]:
    """One page of invoices with their index (rowid: the order they were made in)."""
    where = ["rowid < ?"]
    params: list[Any] = [2**63 - 1 if query.before is None else query.before]
    if query.status == "paid":
        where.append("status = 'paid'")
    elif query.status is not None:
        where.append(
            "status = 'open' AND expires_ms " + ("> ?" if query.status == "open" else "<= ?")
        )
        params.append(now_ms)
    if query.hash_prefix:
        low, high = _hash_range(query.hash_prefix)
        where.append("payment_hash >= ?" + ("" if high is None else " AND payment_hash < ?"))
        params += [low] if high is None else [low, high]
    rows = connection.execute(
        f"SELECT rowid, {_INVOICE_COLUMNS} FROM invoices WHERE {' AND '.join(where)} "
        "ORDER BY rowid DESC LIMIT ? OFFSET ?",
        (*params, query.limit, query.offset),
    )
    return [(row[0], _invoice(row[1:])) for row in rows]


def _hash_range(prefix: str) -> tuple[bytes, bytes | None]:
    """The byte strings from the smallest hash with this hex prefix up to (excluding) the
    first one above them (None: no bound)."""
    low = bytes.fromhex(prefix.ljust(64, "0"))
    top = int(prefix, 16) + 1
    if top >= 16 ** len(prefix):
        return low, None
    return low, bytes.fromhex(f"{top:0{len(prefix)}x}".ljust(64, "0"))


DEFAULT_FEE_POLICY = FeePolicy()


def load_state(
    connection: sqlite3.Connection,
    identity: Identity,
    chain_id: ChainId,
    config: ChannelConfig,
    *,
    now_ms: int,
    withhold_decisions: bool = False,
    fee_policy: FeePolicy = DEFAULT_FEE_POLICY,
) -> NodeState:
    """The node's state as stored: every channel, the secrets registered on layer 1 and the
    last processed block, the invoices that can still be paid, the payments still pending (in
    both directions) and the forwards in progress: history stays on disk."""
    gossip = load_gossip(connection, GossipConfig(chain_id, NodeId(identity.node_id)))
    state = NodeState(
        identity,
        chain_id,
        config,
        withhold_decisions=withhold_decisions,
        fee_policy=fee_policy,
        gossip=gossip,
        chain_view=load_chain_view(connection),
    )
    for channel in ChannelTables().load(connection):
        state.channels[channel.channel_id] = channel
    state.registered = load_chain_secrets(connection)
    state.height = load_processed_block(connection) or 0
    payments = state.payments
    for record in load_open_invoices(connection, now_ms):
        invoice = decode_invoice(record.encoded, chain_id)
        payments.invoices[record.payment_hash] = OpenInvoice(invoice, record)
    for payment in load_pending(connection):
        if payment.direction == "in":
            payments.incoming[payment.payment_hash] = Payee(payment)
        elif payment.direction == "out":
            # Signed before the restart (a record is written with the update carrying its lock).
            payments.outgoing[payment.payment_hash] = Payer(payment, None, PayerStatus.LOCKED)
    payments.forwards = load_forwards(connection, state)
    payments.seen_onions = {
        bytes(tag): expiration
        for tag, expiration in connection.execute("SELECT tag, expiration FROM onion_replays")
    }
    return state


# -- forwards ----------------------------------------------------------------------------------


def encode_forward(forward: Forward) -> bytes:
    return pack(
        [
            forward.in_channel,
            forward.out_channel,
            forward.next_node,
            forward.in_amount,
            forward.out_amount,
            forward.expiration,
            forward.shared_secret,
            forward.created_ms,
            forward.secret,
        ]
    )


def load_forwards(connection: sqlite3.Connection, state: NodeState) -> dict[SecretHash, Forward]:
    """The forwards in progress. Their status follows from the channels stored with them: the
    secret known (claimed), the outgoing lock signed (locked), or neither (offered: it fails
    upstream on `Resume`)."""
    forwards: dict[SecretHash, Forward] = {}
    for secrethash, blob in connection.execute("SELECT secrethash, record FROM forwards"):
        try:
            fields = unpack(bytes(blob), max_len=len(blob))
            in_ch, out_ch, next_node, in_amount, out_amount, expiration, shared, at, secret = fields
        except (ValueError, TypeError) as error:
            raise StoreError(f"corrupt forward in the node database: {error}") from None
        key = SecretHash(bytes(secrethash))
        out_channel = state.channels.get(ChannelId(bytes(out_ch)))
        status = ForwardStatus.OFFERED
        if secret is not None:
            status = ForwardStatus.CLAIMED
        elif out_channel is not None and any(
            held.secrethash == key for held in out_channel.ours.all_locks()
        ):
            status = ForwardStatus.LOCKED
        forwards[key] = Forward(
            key,
            ChannelId(bytes(in_ch)),
            ChannelId(bytes(out_ch)),
            Address(bytes(next_node)),
            in_amount,
            out_amount,
            expiration,
            bytes(shared),
            at,
            status,
            None if secret is None else Secret(bytes(secret)),
        )
    return forwards
