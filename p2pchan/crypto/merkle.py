"""The depth-16 binary Merkle tree of Plasma blocks, and its inclusion proofs.

Layer 1 (checking an exit's or a challenge's inclusion) and the Plasma core (building and
validating blocks) both read these bytes, so they live below both. The tree always has 65,536
leaf slots; a slot without a transaction holds `EMPTY_LEAF = sha256(b"")`, and an inner node is
`sha256(left || right)`. The empty subtrees of each level are precomputed, so a block of n
transactions costs about n hashes, not 65,536. A proof is the 16 sibling hashes from the leaf up,
concatenated (512 bytes); the leaf's index says at each level whether it is the left or the
right child. The fixed depth means an inner node can never be passed off as a leaf.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from p2pchan.errors import CryptoError

DEPTH = 16
MAX_LEAVES = 1 << DEPTH
HASH_SIZE = 32
PROOF_SIZE = DEPTH * HASH_SIZE
EMPTY_LEAF = hashlib.sha256(b"").digest()


def _empty_subtrees() -> tuple[bytes, ...]:
    """EMPTY[level]: the root of an all-empty subtree of height `level` (EMPTY[0] a leaf)."""
    hashes = [EMPTY_LEAF]
    for _ in range(DEPTH):
        hashes.append(hashlib.sha256(hashes[-1] + hashes[-1]).digest())
    return tuple(hashes)


EMPTY = _empty_subtrees()
EMPTY_ROOT = EMPTY[DEPTH]


class MerkleTree:
    """Every level of the tree over `leaves`, so each proof is 16 lookups."""

    __slots__ = ("levels",)

    def __init__(self, leaves: Sequence[bytes]) -> None:
        if len(leaves) > MAX_LEAVES:
            raise CryptoError(f"a Merkle tree holds at most {MAX_LEAVES} leaves, not {len(leaves)}")
        sha256 = hashlib.sha256
        level = list(leaves)
        levels = [level]
        for height in range(DEPTH):
            if len(level) % 2:
                level = [*level, EMPTY[height]]
            level = [sha256(level[i] + level[i + 1]).digest() for i in range(0, len(level), 2)]
            levels.append(level)
        self.levels = levels

    @property
    def root(self) -> bytes:
        top = self.levels[DEPTH]
        return top[0] if top else EMPTY_ROOT

    def proof(self, index: int) -> bytes:
        """The 16 siblings of leaf `index`, bottom-up (512 bytes)."""
        if not 0 <= index < len(self.levels[0]):
            raise CryptoError(f"no leaf {index} in a tree of {len(self.levels[0])}")
        siblings = []
        for height in range(DEPTH):
            level = self.levels[height]
            sibling = index ^ 1
            siblings.append(level[sibling] if sibling < len(level) else EMPTY[height])
            index >>= 1
        return b"".join(siblings)


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    return MerkleTree(leaves).root


def root_from_proof(leaf: bytes, index: int, proof: bytes) -> bytes:
    """The root that `proof` places `leaf` under at `index`; raises `CryptoError` if malformed."""
    if len(leaf) != HASH_SIZE or len(proof) != PROOF_SIZE:
        raise CryptoError(f"a Merkle proof is {PROOF_SIZE} bytes over a {HASH_SIZE}-byte leaf")
    if not 0 <= index < MAX_LEAVES:
        raise CryptoError(f"leaf index {index} is outside the tree")
    sha256 = hashlib.sha256
    node = leaf
    for height in range(DEPTH):
        sibling = proof[height * HASH_SIZE : (height + 1) * HASH_SIZE]
        node = sha256(sibling + node if index & 1 else node + sibling).digest()
        index >>= 1
    return node


def verify_proof(leaf: bytes, index: int, proof: bytes, root: bytes) -> bool:
    """True when `proof` shows `leaf` at `index` in the tree whose root is `root`."""
    try:
        return root_from_proof(leaf, index, proof) == root
    except CryptoError:
        return False
