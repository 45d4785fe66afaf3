"""The Plasma root contract: child chains committed to layer 1, deposits, and the exit game.

Exactly the rules of DESIGN.md "Plasma: child chains on the same layer 1". Every handler checks
everything first and raises `ChainError` (with a stable code) before changing any state, so a
refused call leaves the chain as it was; `height` is the block the call is included in.

Ed25519 keys cannot be recovered from signatures, so each confirmation of a `start_exit` names
its signer: the contract checks that this key signed the transaction's input and the
confirmation (as plasma-mvp checks that one address signed both). That the key owned the input
is what the block's validity says, which the watchers check; an exit from a block that spends
someone else's coin is an exit from an invalid block, and priority makes it wait behind every
honest exit from the blocks before it. A challenge names its spending transaction's position
(`spending_pos`), which the Merkle proof needs.
"""

from __future__ import annotations

from p2pchan.crypto.hashing import sha256
from p2pchan.crypto.merkle import DEPTH, EMPTY, merkle_root, verify_proof
from p2pchan.errors import ChainError, RemoteProtocolError
from p2pchan.l1.contract import CallContext
from p2pchan.l1.events import (
    Event,
    PaidExit,
    PlasmaBlockSubmitted,
    PlasmaCreated,
    PlasmaDeposited,
    PlasmaExitChallenged,
    PlasmaExitsFinalized,
    PlasmaExitStarted,
)
from p2pchan.l1.plasma_state import (
    MAX_CHALLENGE_PERIOD,
    MAX_FINALIZE_PER_CALL,
    MIN_CHALLENGE_PERIOD,
    BlockCommit,
    ExitRecord,
    ExitStatus,
    PlasmaChain,
    exitable_at,
)
from p2pchan.l1.transactions import (
    PlasmaChallengeExit,
    PlasmaCreate,
    PlasmaDeposit,
    PlasmaFinalizeExits,
    PlasmaStartExit,
    PlasmaSubmitBlock,
)
from p2pchan.types import U64_MAX, Address, ChainId, PlasmaId
from p2pchan.wire.plasma import (
    MAX_BLKNUM,
    MAX_DEPOSITS_BETWEEN_BLOCKS,
    DecodedTx,
    SignedPlasmaTx,
    confirmation_valid,
    decode_signed_tx,
    deposit_root,
    is_deposit_block,
    is_valid_utxo_pos,
    split_utxo_pos,
    tx_signature_valid,
)

_PLASMA_ID_TAG = b"p2pchan/plasma_id/1"
_SINGLE_LEAF_PROOF = b"".join(EMPTY[:DEPTH])  # a lone transaction at index 0


def plasma_id_for(chain_id: ChainId, operator: Address, operator_nonce: int) -> PlasmaId:
    """Derived from the creating transaction (like a channel id), so unique forever and bound to
    this layer-1 chain."""
    return PlasmaId(sha256(_PLASMA_ID_TAG, chain_id, operator, operator_nonce.to_bytes(8, "big")))


def _chain(ctx: CallContext, plasma_id: PlasmaId) -> PlasmaChain:
    chain = ctx.state.plasma.get(plasma_id)
    if chain is None:
        raise ChainError("unknown_plasma", f"no child chain {plasma_id.hex()}")
    return chain


def _committed(chain: PlasmaChain, blknum: int) -> BlockCommit:
    commit = chain.blocks.get(blknum)
    if commit is None:
        raise ChainError("unknown_plasma_block", f"child block {blknum} is not committed")
    return commit


def _decode(signed: SignedPlasmaTx, plasma_id: PlasmaId) -> DecodedTx:
    try:
        decoded = decode_signed_tx(signed)
    except RemoteProtocolError as error:
        raise ChainError("invalid_tx", f"malformed plasma transaction: {error}") from None
    if decoded.tx.plasma_id != plasma_id:
        raise ChainError("wrong_plasma", "the transaction is for another child chain")
    return decoded


def _check_position(position: int, what: str) -> tuple[int, int, int]:
    if not is_valid_utxo_pos(position):
        raise ChainError("invalid_position", f"{what} {position} names no output slot")
    return split_utxo_pos(position)


def _check_holdings(chain: PlasmaChain, added: int) -> None:
    if chain.held() + added > U64_MAX:
        raise ChainError("overflow", "the child chain's holdings would exceed u64")


def create(ctx: CallContext, call: PlasmaCreate) -> list[Event]:
    if call.challenge_period < MIN_CHALLENGE_PERIOD:
        raise ChainError(
            "challenge_period_too_small",
            f"challenge_period {call.challenge_period} is below the minimum {MIN_CHALLENGE_PERIOD}",
        )
    if call.challenge_period > MAX_CHALLENGE_PERIOD:
        raise ChainError(
            "challenge_period_too_large",
            f"challenge_period {call.challenge_period} is above the maximum {MAX_CHALLENGE_PERIOD}",
        )
    plasma_id = plasma_id_for(ctx.state.chain_id, ctx.sender, ctx.nonce)
    ctx.state.plasma[plasma_id] = PlasmaChain(
        plasma_id, ctx.sender, call.exit_bond, call.challenge_period, ctx.height
    )
    return [PlasmaCreated(plasma_id, ctx.sender, call.exit_bond, call.challenge_period)]


def submit_block(ctx: CallContext, call: PlasmaSubmitBlock) -> list[Event]:
    chain = _chain(ctx, call.plasma_id)
    if ctx.sender != chain.operator:
        raise ChainError("not_operator", "only the child chain's operator submits blocks")
    blknum = chain.next_block
    if blknum > MAX_BLKNUM:
        raise ChainError("overflow", "the child chain has no block numbers left")
    chain.blocks[blknum] = BlockCommit(call.root, ctx.height)
    chain.current_block = blknum
    chain.deposits_since_block = 0
    return [PlasmaBlockSubmitted(chain.plasma_id, blknum, call.root, ctx.height)]


def deposit(ctx: CallContext, call: PlasmaDeposit) -> list[Event]:
    chain = _chain(ctx, call.plasma_id)
    if call.amount == 0:
        raise ChainError("invalid_amount", "a deposit must be more than 0")
    if call.amount > ctx.spendable:
        raise ChainError(
            "insufficient_funds", f"deposit of {call.amount} exceeds spendable {ctx.spendable}"
        )
    if chain.deposits_since_block >= MAX_DEPOSITS_BETWEEN_BLOCKS:
        raise ChainError(
            "too_many_deposits",
            f"{MAX_DEPOSITS_BETWEEN_BLOCKS} deposits since child block {chain.current_block}; "
            "retry after the operator's next block",
        )
    _check_holdings(chain, call.amount)
    blknum = chain.next_deposit_block
    if blknum > MAX_BLKNUM:
        raise ChainError("overflow", "the child chain has no block numbers left")
    root = deposit_root(chain.plasma_id, ctx.sender, call.amount)
    ctx.state.account(ctx.sender).balance -= call.amount
    chain.blocks[blknum] = BlockCommit(root, ctx.height)
    chain.deposits_since_block += 1
    chain.deposits_held += call.amount
    return [PlasmaDeposited(chain.plasma_id, blknum, ctx.sender, call.amount, ctx.height)]


def _check_inclusion(
    decoded: DecodedTx, blknum: int, txindex: int, proof: bytes, commit: BlockCommit
) -> None:
    """The transaction is at `txindex` of committed block `blknum`."""
    if is_deposit_block(blknum):
        # A deposit block holds one transaction; its proof may be left out.
        if txindex != 0 or decoded.tx.inputs or proof not in (b"", _SINGLE_LEAF_PROOF):
            raise ChainError("invalid_proof", "a deposit block holds one deposit at index 0")
        if merkle_root([decoded.signed.leaf]) != commit.root:
            raise ChainError("invalid_proof", "the transaction is not this block's deposit")
        return
    if not verify_proof(decoded.signed.leaf, txindex, proof, commit.root):
        raise ChainError("invalid_proof", f"the proof does not place it in child block {blknum}")


def start_exit(ctx: CallContext, call: PlasmaStartExit) -> list[Event]:
    chain = _chain(ctx, call.plasma_id)
    blknum, txindex, oindex = _check_position(call.utxo_pos, "utxo_pos")
    if call.utxo_pos in chain.exits:
        raise ChainError("already_exited", f"output {call.utxo_pos} has had its exit")
    commit = _committed(chain, blknum)
    decoded = _decode(call.tx, chain.plasma_id)
    tx = decoded.tx
    if oindex >= len(tx.outputs):
        raise ChainError("no_such_output", f"the transaction has no output {oindex}")
    output = tx.outputs[oindex]
    if output.owner != ctx.sender:
        raise ChainError("not_owner", "only the output's owner may exit it")
    _check_inclusion(decoded, blknum, txindex, call.proof, commit)
    if len(call.confirmations) != len(tx.inputs):
        raise ChainError(
            "missing_confirmations",
            f"{len(tx.inputs)} inputs need as many confirmations, got {len(call.confirmations)}",
        )
    for index, confirmation in enumerate(call.confirmations):
        signer = confirmation.owner
        if not tx_signature_valid(signer, call.tx.tx_bytes, call.tx.signatures[index]):
            raise ChainError(
                "invalid_confirmation", f"confirmation {index} is not by input {index}'s signer"
            )
        if not confirmation_valid(signer, decoded.tx_hash, commit.root, confirmation.signature):
            raise ChainError("invalid_confirmation", f"confirmation {index} has a bad signature")
    if chain.exit_bond > ctx.spendable:
        raise ChainError(
            "insufficient_funds", f"the exit bond {chain.exit_bond} exceeds {ctx.spendable}"
        )
    _check_holdings(chain, chain.exit_bond)
    record = ExitRecord(
        utxo_pos=call.utxo_pos,
        owner=ctx.sender,
        amount=output.amount,
        bond=chain.exit_bond,
        started_block=ctx.height,
        exitable_at=exitable_at(commit.height, ctx.height, chain.challenge_period),
        status=ExitStatus.QUEUED,
        paid=0,
    )
    ctx.state.account(ctx.sender).balance -= chain.exit_bond
    chain.bonds_held += chain.exit_bond
    chain.exits[call.utxo_pos] = record
    chain.enqueue(record)
    return [
        PlasmaExitStarted(
            chain.plasma_id, call.utxo_pos, ctx.sender, output.amount, record.exitable_at
        )
    ]


def challenge_exit(ctx: CallContext, call: PlasmaChallengeExit) -> list[Event]:
    chain = _chain(ctx, call.plasma_id)
    record = chain.exits.get(call.utxo_pos)
    if record is None:
        raise ChainError("unknown_exit", f"no exit of output {call.utxo_pos}")
    if record.status != ExitStatus.QUEUED:
        status = ExitStatus(record.status).name.lower()
        raise ChainError("exit_not_queued", f"the exit of {call.utxo_pos} is already {status}")
    blknum, txindex, oindex = _check_position(call.spending_pos, "spending_pos")
    if oindex != 0:
        raise ChainError("invalid_position", "spending_pos names a transaction: output index 0")
    commit = _committed(chain, blknum)
    decoded = _decode(call.spending_tx, chain.plasma_id)
    spending = [
        i for i, tx_input in enumerate(decoded.tx.inputs) if tx_input.pos == record.utxo_pos
    ]
    if not spending:
        raise ChainError("not_spending", f"the transaction does not spend {record.utxo_pos}")
    _check_inclusion(decoded, blknum, txindex, call.proof, commit)
    signature = call.spending_tx.signatures[spending[0]]
    if not tx_signature_valid(record.owner, call.spending_tx.tx_bytes, signature):
        raise ChainError("not_signed_by_owner", "the exiting owner did not sign this spend")
    if not confirmation_valid(record.owner, decoded.tx_hash, commit.root, call.confirmation):
        raise ChainError("invalid_confirmation", "the exiting owner did not confirm this spend")
    record.status = ExitStatus.CHALLENGED
    chain.dequeue(record)
    chain.bonds_held -= record.bond
    ctx.state.account(ctx.sender).balance += record.bond
    return [PlasmaExitChallenged(chain.plasma_id, record.utxo_pos, ctx.sender, call.spending_pos)]


def finalize_exits(ctx: CallContext, call: PlasmaFinalizeExits) -> list[Event]:
    chain = _chain(ctx, call.plasma_id)
    if not 1 <= call.max_count <= MAX_FINALIZE_PER_CALL:
        raise ChainError(
            "invalid_count", f"max_count must be between 1 and {MAX_FINALIZE_PER_CALL}"
        )
    if not chain.queue:
        raise ChainError("no_exits", "no exit is queued")
    head_exitable_at = chain.queue[0][0]
    if head_exitable_at > ctx.height:
        raise ChainError(
            "exits_not_due", f"the first exit is payable from block {head_exitable_at}"
        )
    paid: list[PaidExit] = []
    while chain.queue and len(paid) < call.max_count and chain.queue[0][0] <= ctx.height:
        _, position = chain.queue[0]
        record = chain.exits[position]
        amount = min(record.amount, chain.deposits_held)  # never more than the chain holds
        chain.deposits_held -= amount
        chain.bonds_held -= record.bond
        ctx.state.account(record.owner).balance += amount + record.bond
        record.status = ExitStatus.PAID
        record.paid = amount
        del chain.queue[0]
        paid.append(PaidExit(position, record.owner, amount, record.bond))
    return [PlasmaExitsFinalized(chain.plasma_id, tuple(paid))]
