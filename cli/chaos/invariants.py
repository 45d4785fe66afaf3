"""The invariants of DESIGN.md checked at the end of a chaos run, from what layer 1 shows and
what every node's own records say. Pure: the run gathers `Observations`, this judges them.

1 conservation: the chain's supply is what the faucet granted, and equals every account's
  balance + what the contract holds + fees burned; once every channel settled, the contract
  holds nothing; and per channel, what its two ends say layer 1 paid them adds up to what was
  deposited in it (money moves between channels only by payments, never leaks out of one).
2 books: per honest node, final layer-1 balance = granted - sent - fees paid - layer-1 fees
  + received + fees earned (a mediator's `forward` records), all from its own payment records;
  and per payment, it completed at both ends for the same amount or failed at both, and the
  fee its payer paid is what its mediators earned. A payment an attacker took part in (as
  payer, payee or mediator) is excused from those cross-checks: an attacker may leave a payee
  paid and its payer not, at its own cost; invariant 3 still judges every honest node's funds.
3 no honest node loses: its final balance is at least what its records entitle it to
  (an attacker's gains show up here as its victim's loss).
4 every payment of an honest node ended succeeded or failed.
5 monotonic: per channel direction, a node's nonces and transferred amounts never fall from one
  sample to the next (restarts included; transferred rises only with the nonce); the nonces
  layer 1 stores never fall from event to event; layer 1 never holds a nonce its sender never
  signed nor a transferred amount no node agreed to; and where an honest receiver faced a
  forced close, the proof that won is at least its newest.

Attackers (cheaters, misbehaving nodes) are excluded from 2-4 for their own funds, as DESIGN's
invariant 3 excludes them; each check names the nodes and channels it found at fault.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

INVARIANTS = (
    "1_conservation",
    "2_books",
    "3_no_honest_loss",
    "4_payments_final",
    "5_monotonic",
)
MAX_DETAILS = 5


@dataclass(frozen=True)
class Record:
    """A payment record of a node: direction `out`, `in`, or a forwarding one (fees earned)."""

    payment_hash: str
    direction: str
    amount: int
    fee: int
    status: str


@dataclass(frozen=True)
class ChannelSample:
    """One look at a node's view of a channel (`channels`), in the order they were taken."""

    node: str
    channel_id: str
    sent_nonce: int  # of its newest counter-signed proof
    sent_transferred: int
    received_nonce: int  # of the partner's newest proof it accepted
    received_transferred: int
    signed_nonce: int = 0  # the highest nonce it ever signed


@dataclass(frozen=True)
class ChainNonces:
    """The stored proofs' nonces a close or update event reported, in block order."""

    channel_id: str
    nonces: dict[str, int]  # sender alias → nonce


@dataclass(frozen=True)
class ChainProof:
    """The proof of one direction layer 1 held when the channel settled."""

    channel_id: str
    sender: str
    receiver: str
    nonce: int
    transferred: int
    forced: bool  # settled after a close, not cooperatively


@dataclass(frozen=True)
class SettledEnd:
    """What one end of a channel says layer 1 paid it (None: it never saw the channel settle)."""

    node: str
    channel_id: str
    paid: int | None


@dataclass
class Observations:
    supply: int
    burned: int
    contract_holdings: int
    granted: dict[str, int]  # alias → faucet grants
    balances: dict[str, int]  # alias → final layer-1 balance
    l1_fees: dict[str, int]  # alias → layer-1 fees it paid
    records: dict[str, list[Record]]  # alias → its payment records
    honest: set[str]
    samples: list[ChannelSample] = field(default_factory=list)
    chain_events: list[ChainNonces] = field(default_factory=list)
    chain_proofs: list[ChainProof] = field(default_factory=list)
    other_accounts: int = 0  # balances of accounts that are none of the nodes
    deposits: dict[str, int] = field(default_factory=dict)  # channel → its deposits (layer 1)
    settled: list[SettledEnd] = field(default_factory=list)


@dataclass
class Verdict:
    invariants: dict[str, str]
    violations: list[str]

    @property
    def ok(self) -> bool:
        return not self.violations


def check(observed: Observations) -> Verdict:
    found: dict[str, list[str]] = {
        "1_conservation": list(_conservation(observed)),
        "2_books": list(_books(observed)),
        "3_no_honest_loss": list(_no_honest_loss(observed)),
        "4_payments_final": list(_payments_final(observed)),
        "5_monotonic": list(_monotonic(observed)),
    }
    invariants = {}
    violations = []
    for name in INVARIANTS:
        problems = found[name]
        if not problems:
            invariants[name] = "ok"
            continue
        shown = "; ".join(problems[:MAX_DETAILS])
        more = f" (and {len(problems) - MAX_DETAILS} more)" if len(problems) > MAX_DETAILS else ""
        invariants[name] = shown + more
        violations += [f"{name}: {problem}" for problem in problems]
    return Verdict(invariants, violations)


def _conservation(o: Observations) -> Iterable[str]:
    granted = sum(o.granted.values())
    if o.supply != granted:
        yield f"supply {o.supply} is not what the faucet granted ({granted})"
    held = sum(o.balances.values()) + o.other_accounts
    if held + o.contract_holdings + o.burned != o.supply:
        yield (
            f"balances {held} + contract {o.contract_holdings} + burned {o.burned} = "
            f"{held + o.contract_holdings + o.burned}, not the supply {o.supply}"
        )
    if o.contract_holdings:
        yield f"the contract still holds {o.contract_holdings} after every channel settled"
    ends: dict[str, list[SettledEnd]] = defaultdict(list)
    for end in o.settled:
        ends[end.channel_id].append(end)
    for channel_id, both in sorted(ends.items()):
        short = channel_id[:12]
        unsettled = [end.node for end in both if end.paid is None and end.node in o.honest]
        if unsettled:
            yield f"channel {short}: {', '.join(unsettled)} never saw it settle"
        paid = [end.paid for end in both if end.paid is not None]
        deposited = o.deposits.get(channel_id)
        if len(paid) == 2 and deposited is not None and sum(paid) != deposited:
            yield (
                f"channel {short}: its ends were paid {paid[0]} + {paid[1]} = {sum(paid)}, "
                f"{deposited} was deposited"
            )


@dataclass
class _Books:
    sent: int = 0
    fees_paid: int = 0
    received: int = 0
    fees_earned: int = 0


def _books_of(records: Iterable[Record]) -> _Books:
    books = _Books()
    for record in records:
        if record.status != "succeeded":
            continue
        if record.direction == "out":
            books.sent += record.amount
            books.fees_paid += record.fee
        elif record.direction == "in":
            books.received += record.amount
        else:
            books.fees_earned += record.fee
    return books


def expected_balance(o: Observations, alias: str) -> int:
    books = _books_of(o.records.get(alias, []))
    return (
        o.granted.get(alias, 0)
        - books.sent
        - books.fees_paid
        - o.l1_fees.get(alias, 0)
        + books.received
        + books.fees_earned
    )


def _books(o: Observations) -> Iterable[str]:
    for alias in sorted(o.honest):
        expected = expected_balance(o, alias)
        final = o.balances.get(alias, 0)
        if final != expected:
            yield f"{alias} holds {final} on layer 1, its records say {expected}"
    by_payment: dict[str, list[tuple[str, Record]]] = defaultdict(list)
    for alias, records in o.records.items():
        for record in records:
            by_payment[record.payment_hash].append((alias, record))
    for payment_hash, entries in sorted(by_payment.items()):
        if all(alias in o.honest for alias, _ in entries):
            yield from _one_payment(payment_hash[:12], entries)


def _one_payment(short: str, entries: list[tuple[str, Record]]) -> Iterable[str]:
    """One payment seen by honest nodes only: both ends agree, the fees add up."""
    outs = [(alias, r) for alias, r in entries if r.direction == "out"]
    ins = [(alias, r) for alias, r in entries if r.direction == "in"]
    forwards = [(alias, r) for alias, r in entries if r.direction == "forward"]
    paid = [(alias, r) for alias, r in outs if r.status == "succeeded"]
    received = [(alias, r) for alias, r in ins if r.status == "succeeded"]
    earned = [(alias, r) for alias, r in forwards if r.status == "succeeded"]
    for alias, _ in paid:
        if not received:
            yield f"payment {short} succeeded for its payer {alias} but no payee received it"
    for alias, record in received:
        if outs and not paid:
            yield f"payment {short} received by {alias} but failed for its payer"
        for _, r in paid:
            if r.amount != record.amount:
                yield f"payment {short}: paid {r.amount}, {alias} received {record.amount}"
    for _, r in paid:
        fees = sum(f.fee for _, f in earned)
        if fees != r.fee:
            yield f"payment {short}: its payer paid {r.fee} in fees, its mediators earned {fees}"
    if outs and not paid:
        for alias, _ in earned:
            yield f"payment {short} failed for its payer but {alias} earned a fee forwarding it"


def _no_honest_loss(o: Observations) -> Iterable[str]:
    for alias in sorted(o.honest):
        loss = expected_balance(o, alias) - o.balances.get(alias, 0)
        if loss > 0:
            yield f"honest {alias} lost {loss}"


def _payments_final(o: Observations) -> Iterable[str]:
    for alias in sorted(o.honest):
        open_records = [
            r for r in o.records.get(alias, []) if r.status not in ("succeeded", "failed")
        ]
        if open_records:
            hashes = ", ".join(r.payment_hash[:12] for r in open_records[:3])
            status = open_records[0].status
            yield f"{alias} has {len(open_records)} payments still {status} ({hashes})"


def _monotonic(o: Observations) -> Iterable[str]:
    last: dict[tuple[str, str], ChannelSample] = {}
    highest: dict[tuple[str, str], ChannelSample] = {}
    for sample in o.samples:
        key = (sample.node, sample.channel_id)
        before = last.get(key)
        if before is not None:
            yield from _sample_steps(before, sample)
        last[key] = sample
        highest[key] = sample if before is None else _max_sample(highest[key], sample)
    stored: dict[tuple[str, str], int] = {}
    for event in o.chain_events:
        for sender, nonce in sorted(event.nonces.items()):
            key = (event.channel_id, sender)
            if nonce < stored.get(key, 0):
                yield (
                    f"channel {event.channel_id[:12]}: layer 1's nonce of {sender} fell "
                    f"from {stored[key]} to {nonce}"
                )
            stored[key] = max(stored.get(key, 0), nonce)
    for proof in o.chain_proofs:
        yield from _proof_against_records(proof, highest, o.honest)


def _sample_steps(before: ChannelSample, now: ChannelSample) -> Iterable[str]:
    where = f"{now.node} channel {now.channel_id[:12]}"
    for side in ("sent", "received"):
        nonce_before = getattr(before, f"{side}_nonce")
        nonce_now = getattr(now, f"{side}_nonce")
        moved_before = getattr(before, f"{side}_transferred")
        moved_now = getattr(now, f"{side}_transferred")
        if nonce_now < nonce_before:
            yield f"{where}: {side} nonce fell from {nonce_before} to {nonce_now}"
        if moved_now < moved_before:
            yield f"{where}: {side} transferred fell from {moved_before} to {moved_now}"
        if moved_now != moved_before and nonce_now <= nonce_before:
            yield f"{where}: {side} transferred changed without a higher nonce ({nonce_now})"
    if now.signed_nonce < before.signed_nonce:
        yield f"{where}: signed nonce fell from {before.signed_nonce} to {now.signed_nonce}"


def _max_sample(a: ChannelSample, b: ChannelSample) -> ChannelSample:
    return ChannelSample(
        a.node,
        a.channel_id,
        max(a.sent_nonce, b.sent_nonce),
        max(a.sent_transferred, b.sent_transferred),
        max(a.received_nonce, b.received_nonce),
        max(a.received_transferred, b.received_transferred),
        max(a.signed_nonce, b.signed_nonce),
    )


def _proof_against_records(
    proof: ChainProof, highest: dict[tuple[str, str], ChannelSample], honest: set[str]
) -> Iterable[str]:
    where = f"channel {proof.channel_id[:12]}, proof of {proof.sender}"
    sender = highest.get((proof.sender, proof.channel_id))
    receiver = highest.get((proof.receiver, proof.channel_id))
    if proof.nonce and sender is not None and proof.nonce > sender.signed_nonce:
        signed = sender.signed_nonce
        yield f"{where}: layer 1 holds nonce {proof.nonce}, the sender signed up to {signed}"
    agreed = max(
        sender.sent_transferred if sender is not None else 0,
        receiver.received_transferred if receiver is not None else 0,
    )
    if proof.nonce and (sender or receiver) and proof.transferred > agreed:
        moved = proof.transferred
        yield f"{where}: layer 1 holds transferred {moved}, no node agreed past {agreed}"
    if (
        proof.forced
        and receiver is not None
        and proof.receiver in honest
        and proof.transferred < receiver.received_transferred
    ):
        yield (
            f"{where}: a stale proof won ({proof.transferred} transferred; honest "
            f"{proof.receiver} held {receiver.received_transferred})"
        )
