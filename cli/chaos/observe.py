"""What a chaos run looks at: each node's channels (sampled through the run, for invariant 5,
and at the end: what it says layer 1 paid it) and payment records, and layer 1 at the end
(supply, balances, every block's transactions and contract events, each channel's deposits and
settled record). Turns them into `invariants.Observations`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import trio

from p2pchan.errors import P2pchanError, UserError
from p2pchan.l1.client import L1Client, subscribe
from p2pchan.l1.events import ChannelClosed, ChannelUpdated
from p2pchan.l1.transactions import decode_transaction
from p2pchan.types import Address, ChannelId
from p2pchan_cli.chaos.invariants import (
    ChainNonces,
    ChainProof,
    ChannelSample,
    Observations,
    Record,
    SettledEnd,
)
from p2pchan_cli.localnet.network import HOST, Network

SAMPLE_TIMEOUT = 3.0


def samples_of(alias: str, channels: Iterable[dict[str, Any]]) -> list[ChannelSample]:
    return [
        ChannelSample(
            alias,
            str(c["channel_id"]),
            int(c.get("sent_nonce", 0)),
            int(c.get("sent_transferred", 0)),
            int(c.get("received_nonce", 0)),
            int(c.get("received_transferred", 0)),
            int(c.get("signed_nonce", 0)),
        )
        for c in channels
    ]


async def sample_node(network: Network, alias: str) -> list[ChannelSample] | None:
    """The node's channels now, or None if it does not answer in time (paused, restarting)."""
    with trio.move_on_after(SAMPLE_TIMEOUT):
        try:
            return samples_of(alias, await network.nodes[alias].call("channels"))
        except (P2pchanError, OSError):  # any failure to ask: no sample this time
            return None
    return None


def records_of(payments: Iterable[dict[str, Any]]) -> list[Record]:
    return [
        Record(
            str(p["payment_hash"]),
            str(p["direction"]),
            int(p["amount"]),
            int(p.get("fee") or 0),
            str(p["status"]),
        )
        for p in payments
    ]


def settled_of(alias: str, channels: Iterable[dict[str, Any]]) -> list[SettledEnd]:
    return [
        SettledEnd(
            alias,
            str(c["channel_id"]),
            int(c["settled_balance"]) if c.get("settled_balance") is not None else None,
        )
        for c in channels
    ]


async def settled_ends(network: Network) -> list[SettledEnd]:
    """Every node's word on what layer 1 paid it per channel (all nodes are up by now)."""
    ends: list[SettledEnd] = []
    for alias, node in network.nodes.items():
        try:
            ends += settled_of(alias, await node.call("channels"))
        except (P2pchanError, OSError) as error:
            raise UserError(f"cannot read {alias}'s channels: {error}") from None
    return ends


async def observe_chain(
    network: Network,
    honest: set[str],
    records: dict[str, list[Record]],
    samples: list[ChannelSample],
) -> Observations:
    alias_of = {node.node_id: alias for alias, node in network.nodes.items()}
    async with L1Client.connect(HOST, network.l1_port) as client:
        status = await client.status()
        balances = {
            alias: (await client.account(Address(bytes.fromhex(node.node_id)))).balance
            for alias, node in network.nodes.items()
        }
        l1_fees = dict.fromkeys(network.nodes, 0)
        for height in range(1, status.height + 1):
            block = await client.block(height)
            for signed in block.transactions:
                transaction = decode_transaction(signed, verify=False)
                sender = alias_of.get(transaction.sender.hex())
                if sender is not None:
                    l1_fees[sender] += transaction.fee
        proofs: list[ChainProof] = []
        deposits: dict[str, int] = {}
        participants: dict[str, tuple[str, str]] = {}
        for channel_id in network.channel_ids.values():
            record = await client.channel(ChannelId(bytes.fromhex(channel_id)))
            if record is None:
                continue
            a = alias_of.get(record.participant_a.hex(), record.participant_a.hex())
            b = alias_of.get(record.participant_b.hex(), record.participant_b.hex())
            participants[channel_id] = (a, b)
            deposits[channel_id] = record.total_deposit
            forced = record.closer is not None
            for sender, receiver, proof in ((a, b, record.proof_a), (b, a, record.proof_b)):
                proofs.append(
                    ChainProof(
                        channel_id, sender, receiver, proof.nonce, proof.transferred_amount, forced
                    )
                )
    events: list[ChainNonces] = []
    if status.height:
        async with subscribe(HOST, network.l1_port, 1) as notices:
            async for notice in notices:
                for event in notice.events:
                    if isinstance(event, ChannelClosed | ChannelUpdated):
                        channel_id = event.channel_id.hex()
                        a, b = participants.get(channel_id, ("a", "b"))
                        events.append(ChainNonces(channel_id, {a: event.nonce_a, b: event.nonce_b}))
                if notice.header.height >= status.height:
                    break
    return Observations(
        supply=status.supply,
        burned=status.burned,
        contract_holdings=status.contract_holdings,
        granted={spec.alias: spec.funds for spec in network.topology.nodes},
        balances=balances,
        l1_fees=l1_fees,
        records=records,
        honest=honest,
        samples=samples,
        chain_events=events,
        chain_proofs=proofs,
        deposits=deposits,
        settled=await settled_ends(network),
    )
