"""One direction of a channel: what its sender has signed, and the locks that are pending in it.

`DirectionState` is the content of a balance proof (nonce, transferred amount, pending locks in
the order they were added) plus each lock's hop payload. It is immutable; the operations below
return new states and raise `ValueError` on nonsense (the callers turn that into the right
protocol error). The locked amount and locksroot always follow from the locks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from p2pchan.types import Address, ChainId, ChannelId, Locksroot, SecretHash
from p2pchan.wire.balance_proof import BalanceProof
from p2pchan.wire.locks import HeldLock, locksroot


@dataclass(frozen=True, slots=True)
class DirectionState:
    nonce: int = 0
    transferred: int = 0
    locks: tuple[HeldLock, ...] = ()
    _index: dict[SecretHash, int] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self._index and self.locks:
            object.__setattr__(
                self, "_index", {held.secrethash: i for i, held in enumerate(self.locks)}
            )

    @property
    def locked(self) -> int:
        return sum(held.lock.amount for held in self.locks)

    @property
    def locksroot(self) -> Locksroot:
        return locksroot(held.lock for held in self.locks)

    @property
    def secrethashes(self) -> frozenset[SecretHash]:
        return frozenset(self._index)

    def has_lock(self, secrethash: SecretHash) -> bool:
        return secrethash in self._index

    def lock(self, secrethash: SecretHash) -> HeldLock:
        return self.locks[self._index[secrethash]]

    def proof(self, chain_id: ChainId, channel_id: ChannelId, sender: Address) -> BalanceProof:
        return BalanceProof(
            chain_id, channel_id, sender, self.nonce, self.transferred, self.locked, self.locksroot
        )

    def adding(self, nonce: int, new: Iterable[HeldLock]) -> DirectionState:
        added = tuple(new)
        hashes = [held.secrethash for held in added]
        if len(set(hashes)) != len(hashes) or any(h in self._index for h in hashes):
            raise ValueError("two pending locks would share a secrethash")
        return DirectionState(nonce, self.transferred, self.locks + added)

    def unlocking(self, nonce: int, secrethashes: Iterable[SecretHash]) -> DirectionState:
        """Pay out the named locks: they leave the pending set, their amounts are transferred."""
        gone = set(secrethashes)
        if not gone <= self._index.keys():
            raise ValueError("unlocks a lock that is not pending")
        paid = sum(self.lock(h).lock.amount for h in gone)
        kept = tuple(held for held in self.locks if held.secrethash not in gone)
        return DirectionState(nonce, self.transferred + paid, kept)

    def removing(self, nonce: int, secrethashes: Iterable[SecretHash]) -> DirectionState:
        """Drop the named locks (expired or failed) unpaid; names not pending are ignored."""
        gone = set(secrethashes)
        kept = tuple(held for held in self.locks if held.secrethash not in gone)
        return DirectionState(nonce, self.transferred, kept)

    def renumbered(self, nonce: int) -> DirectionState:
        return DirectionState(nonce, self.transferred, self.locks, self._index)
