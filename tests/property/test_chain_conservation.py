"""Hypothesis: random layer-1 activity never creates, destroys or strands money by mistake.

A state machine drives four identities (one of them unfunded) through transfers, faucet grants,
channel opens and deposits, off-chain proofs (random amounts, locks and nonces, stale ones
included, with or without counter-signatures), closes, updates, settles, unlocks, cooperative
settles and secret registrations, over advancing block heights. Many calls are rejected; that is
the point. After every step:

- conservation: balances + contract holdings == supply - burned;
- no balance and no channel amount is negative or above u64;
- a rejected call changed nothing (checked on every call);
- per channel direction the stored proof nonce never decreases, and a channel's state only moves
  forward (open -> closed -> settled);
- a pair is "live" exactly while it has an unsettled channel;
- deposits never decrease.

Accepted calls are also checked against the rules they must have obeyed (a model check): a
settle pays DESIGN's formula after the window, an unlock pays the registered-in-time locks (never
more than was withheld) once all have expired, an update raises a nonce inside the window, and
every proof stored was signed by its sender and submitted by its receiver or counter-signed.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from p2pchan.crypto.hashing import sha256
from p2pchan.crypto.keys import Identity
from p2pchan.errors import ChainError
from p2pchan.l1.contract import channel_id_for
from p2pchan.l1.events import ChannelSettled, ChannelUnlocked, Event
from p2pchan.l1.state import MIN_SETTLE_TIMEOUT, NO_PROOF, ChannelRecord, ChannelState, StoredProof
from p2pchan.l1.transactions import (
    FAUCET_ADDRESS,
    Call,
    ChannelClose,
    ChannelDeposit,
    ChannelOpen,
    ChannelSettle,
    ChannelUnlock,
    ChannelUpdate,
    FaucetGrant,
    RegisterSecret,
    Transfer,
    faucet_transaction,
)
from p2pchan.types import U64_MAX, Address, ChannelId, Locksroot, SecretHash
from p2pchan.wire.balance_proof import SignedBalanceProof
from p2pchan.wire.locks import EMPTY_LOCKSROOT, Lock, encode_locks, locksroot
from tests.unit.chain_helpers import ChainHarness, circulating, identity, secret, snapshot

PEOPLE = tuple(identity(index) for index in range(1, 5))
FUNDED = PEOPLE[:3]  # the fourth starts with nothing and lives on transfers and the faucet
MIN_FEE = 1
SECRETS = tuple(secret(index) for index in range(6))
UNKNOWN_CHANNEL = ChannelId(bytes(32))

people = st.sampled_from(PEOPLE)
# Who makes a channel call: mostly one of its participants ("a"/"b"), sometimes anybody.
callers = st.sampled_from(["a", "b", "a", "b", *PEOPLE])
picks = st.integers(min_value=0, max_value=10_000)  # an index into a list, taken modulo its length
fees = st.sampled_from([MIN_FEE] * 10 + [0, 5])
nonce_skews = st.sampled_from([0] * 12 + [-1, 1])
small = st.integers(0, 300)
amounts = st.one_of(small, small, small, st.integers(0, 1500), st.just(U64_MAX))
# (amount, expiry relative to the signing block, secret index) of each pending lock
lock_spec = st.tuples(st.integers(0, 120), st.integers(-5, 45), st.integers(0, len(SECRETS) - 1))
lock_specs: st.SearchStrategy[list[tuple[int, int, int]]] = st.one_of(
    st.lists(lock_spec, min_size=1, max_size=3), st.just([])
)


@dataclass(frozen=True)
class ProofSpec:
    """An off-chain proof to sign: whose direction, how its nonce moves, what it carries."""

    from_b: bool
    nonce_step: int  # added to the sender's highest nonce so far: <= 0 is stale or reused
    transferred: int
    locks: list[tuple[int, int, int]]
    locked: int | None  # None: the sum of the locks (else a possibly inconsistent claim)
    counter_signed: bool


proof_specs = st.builds(
    ProofSpec,
    from_b=st.booleans(),
    nonce_step=st.integers(-2, 3),
    transferred=amounts,
    locks=lock_specs,
    locked=st.one_of(st.none(), st.none(), st.none(), st.integers(0, 300)),
    counter_signed=st.sampled_from([True, True, True, False]),
)
fresh_proofs = st.lists(proof_specs, max_size=2)
replayed_proofs = st.lists(picks, max_size=1)  # proofs signed earlier, submitted (again)


def expected_settlement(record: ChannelRecord) -> tuple[int, int, int, int]:
    """DESIGN.md: A's share = min(max(d_A - t_A + t_B, 0), T), B's = T - A's; each side's own
    locked amount is withheld from its share (at most all of it)."""
    total = record.deposit_a + record.deposit_b
    share_a = min(
        max(
            record.deposit_a
            - record.proof_a.transferred_amount
            + record.proof_b.transferred_amount,
            0,
        ),
        total,
    )
    share_b = total - share_a
    withheld_a = min(record.proof_a.locked_amount, share_a)
    withheld_b = min(record.proof_b.locked_amount, share_b)
    return share_a - withheld_a, share_b - withheld_b, withheld_a, withheld_b


class ChainMachine(RuleBasedStateMachine):
    """Random calls against one chain; the model keeps only what is needed to make them.

    Every call goes into its own block (the height rises by one after each), and `advance`
    skips blocks, so settlement windows and lock expiries pass during a run.
    """

    def __init__(self) -> None:
        super().__init__()
        self.harness = ChainHarness.create([(who, 1000) for who in FUNDED], min_fee=MIN_FEE)
        self.height = 1
        self.channels: list[ChannelId] = []
        self.proofs: dict[ChannelId, list[SignedBalanceProof]] = {}
        self.last_signed: dict[tuple[ChannelId, Address], int] = {}
        self.locks_by_root: dict[Locksroot, list[Lock]] = {EMPTY_LOCKSROOT: []}
        self.seen_nonces: dict[tuple[ChannelId, str], int] = {}
        self.seen_states: dict[ChannelId, int] = {}
        self.seen_deposits: dict[ChannelId, tuple[int, int]] = {}
        self.applied_at = 0
        self.cooperatively_settled: set[ChannelId] = set()

    # -- plumbing ---------------------------------------------------------------------

    def submit(
        self, who: Identity, call: Call, fee: int, nonce_skew: int = 0
    ) -> list[Event] | None:
        """Apply `call` in the next block: its events, or None (and nothing changed) if
        rejected. `self.applied_at` is the block it went into."""
        harness = self.harness
        nonce = max(harness.next_nonce(who) + nonce_skew, 0)
        tx = harness.tx(who, call, fee=fee, nonce=nonce)
        before = snapshot(harness.state)
        self.applied_at, self.height = self.height, self.height + 1
        try:
            return harness.apply(tx, self.applied_at)
        except ChainError:
            assert snapshot(harness.state) == before, f"rejected {call!r} changed the state"
            return None

    def channel(self, pick: int, prefer: ChannelState) -> ChannelId:
        """Mostly a channel in the state the call needs, sometimes any (or an unknown id)."""
        state = self.harness.state
        preferred = [
            channel_id for channel_id in self.channels if state.channels[channel_id].state == prefer
        ]
        candidates = preferred if preferred and pick % 8 else self.channels
        return candidates[pick % len(candidates)] if candidates else UNKNOWN_CHANNEL

    def any_channel(self, *states: ChannelState) -> bool:
        return any(record.state in states for record in self.harness.state.channels.values())

    def unsettled_channels(self) -> int:
        return len(self.harness.state.live_pairs)

    def participants(self, channel_id: ChannelId) -> tuple[Identity, Identity]:
        record = self.harness.state.channels.get(channel_id)
        if record is None:
            return PEOPLE[0], PEOPLE[1]
        by_address: dict[bytes, Identity] = {who.node_id: who for who in PEOPLE}
        return by_address[record.participant_a], by_address[record.participant_b]

    def caller(self, channel_id: ChannelId, caller: str | Identity) -> Identity:
        if isinstance(caller, Identity):
            return caller
        return self.participants(channel_id)[caller == "b"]

    def proofs_for(
        self, channel_id: ChannelId, fresh: list[ProofSpec], replayed: list[int]
    ) -> tuple[SignedBalanceProof, ...]:
        """Sign `fresh` proofs now and add `replayed` ones from those signed before."""
        known = self.proofs.setdefault(channel_id, [])
        old = tuple(known[choice % len(known)] for choice in replayed) if known else ()
        new = tuple(self.sign_proof(channel_id, spec) for spec in fresh)
        known.extend(new)
        return (old + new)[:2]  # a call carries at most two proofs

    def sign_proof(self, channel_id: ChannelId, spec: ProofSpec) -> SignedBalanceProof:
        sender, receiver = self.participants(channel_id)[:: -1 if spec.from_b else 1]
        key = (channel_id, sender.node_id)
        nonce = self.last_signed.get(key, 0) + spec.nonce_step
        if nonce < 1:
            nonce = 0 if spec.nonce_step == -2 else 1  # nonce 0 is never valid: keep it rare
        self.last_signed[key] = max(self.last_signed.get(key, 0), nonce)
        locks = [
            Lock(amount, max(self.height + offset, 0), SecretHash(sha256(SECRETS[index])))
            for amount, offset, index in spec.locks
        ]
        self.locks_by_root[locksroot(locks)] = locks
        locked = spec.locked
        if locked is None:
            locked = min(sum(lock.amount for lock in locks), U64_MAX - spec.transferred)
        return self.harness.proof(
            sender,
            channel_id,
            nonce,
            spec.transferred,
            locks=locks,
            locked=locked,
            counter_signer=receiver if spec.counter_signed else None,
        )

    def check_stored_proofs_were_valid(
        self,
        channel_id: ChannelId,
        proofs: tuple[SignedBalanceProof, ...],
        submitter: Identity,
        before: tuple[StoredProof, StoredProof],
    ) -> None:
        """A proof this call stored (its direction changed to it) was valid to submit."""
        record = self.harness.state.channels[channel_id]
        for signed in proofs:
            proof = signed.proof()
            is_a = proof.sender == record.participant_a
            stored = record.proof_a if is_a else record.proof_b
            as_stored = StoredProof(
                proof.nonce, proof.transferred_amount, proof.locked_amount, proof.locksroot
            )
            if stored == before[not is_a] or stored != as_stored:
                continue
            assert proof.nonce >= 1
            receiver = record.partner_of(proof.sender)
            assert submitter.node_id == receiver or signed.counter_signature is not None

    # -- rules ------------------------------------------------------------------------

    @initialize(deposit_a=st.integers(0, 600), deposit_b=st.integers(0, 600))
    def open_first_channel(self, deposit_a: int, deposit_b: int) -> None:
        harness = self.harness
        channel_id = harness.open(
            PEOPLE[0], PEOPLE[1], deposits=(deposit_a, deposit_b), height=self.height
        )
        self.channels.append(channel_id)

    @rule(blocks=st.one_of(st.integers(1, 5), st.integers(10, 30)))
    def advance(self, blocks: int) -> None:
        self.height += blocks

    @rule(pick=picks, offset=st.sampled_from([-1, 0, 0, 1]))
    def advance_to_an_edge(self, pick: int, offset: int) -> None:
        """Jump to just before, at or after a block where a rule flips: the end of a
        settlement window or a lock's expiry (boundaries are where off-by-ones hide)."""
        state = self.harness.state
        edges = [
            record.window_end
            for record in state.channels.values()
            if record.state == ChannelState.CLOSED
        ]
        for record in state.channels.values():
            for stored in (record.proof_a, record.proof_b):
                edges.extend(
                    lock.expiration_block for lock in self.locks_by_root.get(stored.locksroot, [])
                )
        edges = [edge + offset for edge in edges if edge + offset >= self.height]
        if edges:
            self.height = sorted(edges)[pick % len(edges)]

    @rule(
        sender=people,
        to=st.one_of(people.map(lambda who: who.node_id), st.just(FAUCET_ADDRESS)),
        amount=amounts,
        fee=fees,
        nonce_skew=nonce_skews,
    )
    def transfer(
        self, sender: Identity, to: Address, amount: int, fee: int, nonce_skew: int
    ) -> None:
        balance = self.harness.balance(sender)
        if self.submit(sender, Transfer(to, amount), fee, nonce_skew) is not None:
            assert amount + fee <= balance and fee >= MIN_FEE and to != FAUCET_ADDRESS

    @rule(
        to=people,
        amount=st.one_of(st.integers(0, 500), st.just(U64_MAX)),
        to_the_brim=st.sampled_from([None, None, None, 0, 1]),
    )
    def faucet(self, to: Identity, amount: int, to_the_brim: int | None) -> None:
        """A grant; `to_the_brim` asks for exactly the u64 headroom left (+0 or +1)."""
        harness = self.harness
        if to_the_brim is not None:
            amount = U64_MAX - harness.state.supply + to_the_brim
        grant = faucet_transaction(
            harness.chain_id, harness.state.faucet_grants, FaucetGrant(to.node_id, amount)
        )
        before = snapshot(harness.state)
        try:
            harness.apply(grant, self.height)
        except ChainError as error:
            assert error.code == "overflow"
            assert snapshot(harness.state) == before
            return
        assert harness.state.supply <= U64_MAX

    @precondition(lambda self: self.unsettled_channels() < 2)  # keep activity concentrated
    @rule(
        opener=people,
        partner=people,
        settle_timeout=st.sampled_from([19, 20, 20, 25]),
        fee=fees,
    )
    def open(self, opener: Identity, partner: Identity, settle_timeout: int, fee: int) -> None:
        harness = self.harness
        channel_id = channel_id_for(harness.chain_id, opener.node_id, harness.next_nonce(opener))
        if self.submit(opener, ChannelOpen(partner.node_id, settle_timeout), fee) is not None:
            assert settle_timeout >= MIN_SETTLE_TIMEOUT and opener != partner
            assert harness.state.channels[channel_id].state == ChannelState.OPEN
            self.channels.append(channel_id)

    @precondition(lambda self: self.any_channel(ChannelState.OPEN))
    @rule(
        caller=callers,
        pick=picks,
        side=st.booleans(),
        top_up=st.one_of(small, small, st.none()),
        total=amounts,
        fee=fees,
    )
    def deposit(
        self,
        caller: str | Identity,
        pick: int,
        side: bool,
        top_up: int | None,
        total: int,
        fee: int,
    ) -> None:
        """Mostly a top-up of the current total; sometimes any total (lower, huge, the same)."""
        channel_id = self.channel(pick, ChannelState.OPEN)
        participant = self.participants(channel_id)[side]
        record = self.harness.state.channels.get(channel_id)
        if record is not None and top_up is not None:
            total = (record.deposit_b if side else record.deposit_a) + top_up
        call = ChannelDeposit(channel_id, participant.node_id, total)
        current = (record.deposit_b if side else record.deposit_a) if record else 0
        if self.submit(self.caller(channel_id, caller), call, fee) is not None:
            assert total >= current

    @precondition(lambda self: self.any_channel(ChannelState.OPEN))
    @rule(caller=callers, pick=picks, fresh=fresh_proofs, replayed=replayed_proofs, fee=fees)
    def close(
        self,
        caller: str | Identity,
        pick: int,
        fresh: list[ProofSpec],
        replayed: list[int],
        fee: int,
    ) -> None:
        channel_id = self.channel(pick, ChannelState.OPEN)
        proofs = self.proofs_for(channel_id, fresh, replayed)
        closer = self.caller(channel_id, caller)
        if self.submit(closer, ChannelClose(channel_id, proofs), fee) is not None:
            assert closer in self.participants(channel_id)
            self.check_stored_proofs_were_valid(channel_id, proofs, closer, (NO_PROOF, NO_PROOF))

    @precondition(lambda self: self.any_channel(ChannelState.CLOSED))
    @rule(caller=callers, pick=picks, fresh=fresh_proofs, replayed=replayed_proofs, fee=fees)
    def update(
        self,
        caller: str | Identity,
        pick: int,
        fresh: list[ProofSpec],
        replayed: list[int],
        fee: int,
    ) -> None:
        channel_id = self.channel(pick, ChannelState.CLOSED)
        proofs = self.proofs_for(channel_id, fresh, replayed)
        submitter = self.caller(channel_id, caller)
        record = self.harness.state.channels.get(channel_id)
        before = (record.proof_a, record.proof_b) if record else (NO_PROOF, NO_PROOF)
        if self.submit(submitter, ChannelUpdate(channel_id, proofs), fee) is not None:
            assert record is not None and self.applied_at <= record.window_end
            after = (record.proof_a, record.proof_b)
            assert any(new.nonce > old.nonce for new, old in zip(after, before, strict=True)), (
                "an accepted update must raise a nonce"
            )
            self.check_stored_proofs_were_valid(channel_id, proofs, submitter, before)

    @precondition(lambda self: self.any_channel(ChannelState.CLOSED))
    @rule(caller=callers, pick=picks, fee=fees)
    def settle(self, caller: str | Identity, pick: int, fee: int) -> None:
        channel_id = self.channel(pick, ChannelState.CLOSED)
        record = self.harness.state.channels.get(channel_id)
        expected = expected_settlement(record) if record else None
        events = self.submit(self.caller(channel_id, caller), ChannelSettle(channel_id), fee)
        if events is not None:
            assert record is not None and expected is not None
            assert self.applied_at > record.window_end
            assert events == [ChannelSettled(channel_id, *expected)]

    @precondition(lambda self: self.any_channel(ChannelState.SETTLED))
    @rule(
        caller=callers,
        pick=picks,
        side=st.booleans(),
        correct=st.sampled_from([True, True, True, False]),
        fee=fees,
    )
    def unlock(
        self, caller: str | Identity, pick: int, side: bool, correct: bool, fee: int
    ) -> None:
        channel_id = self.channel(pick, ChannelState.SETTLED)
        sender = self.participants(channel_id)[side]
        record = self.harness.state.channels.get(channel_id)
        locks: list[Lock] = []
        if record is not None:
            stored = record.proof_b if side else record.proof_a
            locks = list(self.locks_by_root.get(stored.locksroot, []))
        if not correct:
            locks = locks[1:] if locks else [Lock(1, 0, SecretHash(sha256(SECRETS[0])))]
        call = ChannelUnlock(channel_id, sender.node_id, encode_locks(locks))
        withheld = (record.withheld_b if side else record.withheld_a) if record else 0
        events = self.submit(self.caller(channel_id, caller), call, fee)
        if events is not None:
            assert record is not None
            assert channel_id not in self.cooperatively_settled, "nothing to unlock after coop"
            [unlocked] = events
            assert isinstance(unlocked, ChannelUnlocked)
            stored = record.proof_b if side else record.proof_a
            assert locksroot(locks) == stored.locksroot
            assert all(self.applied_at > lock.expiration_block for lock in locks)
            secrets = self.harness.state.secrets
            claimed = sum(
                lock.amount
                for lock in locks
                if secrets.get(lock.secrethash, U64_MAX + 1) <= lock.expiration_block
            )
            assert unlocked.to_receiver == min(claimed, withheld)
            assert unlocked.to_receiver + unlocked.to_sender == withheld

    @precondition(lambda self: self.any_channel(ChannelState.OPEN, ChannelState.CLOSED))
    @rule(
        caller=callers,
        pick=picks,
        balance_a=st.integers(0, 2000),
        adds_up=st.booleans(),
        expires_in=st.integers(-10, 30),
        signed_by=st.sampled_from(["both", "both", "both", "a", "b"]),
        stale_deposits=st.sampled_from([False, False, False, True]),
        fee=fees,
    )
    def coop_settle(
        self,
        caller: str | Identity,
        pick: int,
        balance_a: int,
        adds_up: bool,
        expires_in: int,
        signed_by: str,
        stale_deposits: bool,
        fee: int,
    ) -> None:
        channel_id = self.channel(pick, ChannelState.OPEN if pick % 3 else ChannelState.CLOSED)
        record = self.harness.state.channels.get(channel_id)
        if record is None:
            return
        was_closed = record.state == ChannelState.CLOSED
        total = record.total_deposit
        balance_a = min(balance_a, total) if adds_up else balance_a
        balance_b = total - balance_a if adds_up else 1
        deposits = (record.deposit_a + 1, record.deposit_b) if stale_deposits else None
        party_a, party_b = self.participants(channel_id)
        expiration = max(self.height + expires_in, 0)
        call = self.harness.coop_settle(
            channel_id,
            balance_a,
            balance_b,
            expiration,
            signers=(
                party_a if signed_by in ("both", "a") else None,
                party_b if signed_by in ("both", "b") else None,
            ),
            deposits=deposits,
        )
        if self.submit(self.caller(channel_id, caller), call, fee) is not None:
            self.cooperatively_settled.add(channel_id)
            assert signed_by == "both" and not stale_deposits
            assert balance_a + balance_b == total and self.applied_at <= expiration
            assert not was_closed or self.applied_at <= record.window_end

    @rule(caller=people, index=st.integers(0, len(SECRETS) - 1), fee=fees)
    def register_secret(self, caller: Identity, index: int, fee: int) -> None:
        secrethash = SecretHash(sha256(SECRETS[index]))
        registered_before = self.harness.state.secrets.get(secrethash)
        accepted = self.submit(caller, RegisterSecret(SECRETS[index]), fee) is not None
        if accepted and registered_before is not None:
            assert self.harness.state.secrets[secrethash] == registered_before

    # -- invariants -------------------------------------------------------------------

    @invariant()
    def money_is_conserved(self) -> None:
        state = self.harness.state
        assert circulating(state) == state.supply - state.burned
        assert state.supply <= U64_MAX

    @invariant()
    def amounts_fit_u64(self) -> None:
        state = self.harness.state
        for account in state.accounts.values():
            assert 0 <= account.balance <= U64_MAX
        for record in state.channels.values():
            for amount in (
                record.deposit_a,
                record.deposit_b,
                record.total_deposit,
                record.withheld_a,
                record.withheld_b,
                record.held(),
            ):
                assert 0 <= amount <= U64_MAX
            for stored in (record.proof_a, record.proof_b):
                assert 0 <= stored.transferred_amount + stored.locked_amount <= U64_MAX

    @invariant()
    def nonces_and_states_only_move_forward(self) -> None:
        for channel_id, record in self.harness.state.channels.items():
            for side, stored in (("a", record.proof_a), ("b", record.proof_b)):
                key = (channel_id, side)
                assert stored.nonce >= self.seen_nonces.get(key, 0)
                self.seen_nonces[key] = stored.nonce
            assert record.state >= self.seen_states.get(channel_id, ChannelState.OPEN)
            self.seen_states[channel_id] = record.state
            deposits = (record.deposit_a, record.deposit_b)
            seen = self.seen_deposits.get(channel_id, (0, 0))
            assert deposits[0] >= seen[0] and deposits[1] >= seen[1], "a deposit decreased"
            self.seen_deposits[channel_id] = deposits

    @invariant()
    def live_pairs_are_the_unsettled_channels(self) -> None:
        state = self.harness.state
        unsettled = [
            frozenset((record.participant_a, record.participant_b))
            for record in state.channels.values()
            if record.state != ChannelState.SETTLED
        ]
        assert len(unsettled) == len(set(unsettled)), "two unsettled channels for one pair"
        assert set(unsettled) == state.live_pairs


TestChainConservation = ChainMachine.TestCase
TestChainConservation.settings = settings(max_examples=100, stateful_step_count=100, deadline=None)
