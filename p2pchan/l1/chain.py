"""The pure chain: applies decoded transactions to a `ChainState` at a given block height.

`apply` checks the envelope (chain id, nonce, fee) and dispatches to the call's rule; on any
`ChainError` the state is exactly as before. Accounts, transfers, the faucet and the secret
registry live here; channel rules live in `p2pchan.l1.contract`, child chains' in
`p2pchan.l1.plasma_contract`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from p2pchan.crypto.hashing import sha256
from p2pchan.errors import ChainError
from p2pchan.l1 import contract, plasma_contract
from p2pchan.l1.contract import CallContext
from p2pchan.l1.events import Event, SecretRegistered
from p2pchan.l1.state import ChainState
from p2pchan.l1.transactions import (
    FAUCET_ADDRESS,
    ChannelClose,
    ChannelDeposit,
    ChannelOpen,
    ChannelSettle,
    ChannelUnlock,
    ChannelUpdate,
    CooperativeSettleCall,
    FaucetGrant,
    PlasmaChallengeExit,
    PlasmaCreate,
    PlasmaDeposit,
    PlasmaFinalizeExits,
    PlasmaStartExit,
    PlasmaSubmitBlock,
    RegisterSecret,
    Transaction,
    Transfer,
)
from p2pchan.types import U64_MAX, SecretHash


def transfer(ctx: CallContext, call: Transfer) -> list[Event]:
    if call.to == FAUCET_ADDRESS:
        raise ChainError("invalid_recipient", "nobody can spend from the faucet address")
    if call.amount > ctx.spendable:
        raise ChainError(
            "insufficient_funds", f"transfer of {call.amount} exceeds spendable {ctx.spendable}"
        )
    ctx.state.account(ctx.sender).balance -= call.amount
    ctx.state.account(call.to).balance += call.amount
    return []


def register_secret(ctx: CallContext, call: RegisterSecret) -> list[Event]:
    """Record the block of a secret's first registration; registering again changes nothing."""
    secrethash = SecretHash(sha256(call.secret))
    if secrethash in ctx.state.secrets:
        return []
    ctx.state.secrets[secrethash] = ctx.height
    return [SecretRegistered(secrethash, call.secret, ctx.height)]


_RULES: dict[type[Any], Callable[[CallContext, Any], list[Event]]] = {
    Transfer: transfer,
    RegisterSecret: register_secret,
    ChannelOpen: contract.open_channel,
    ChannelDeposit: contract.deposit,
    ChannelClose: contract.close,
    ChannelUpdate: contract.update,
    ChannelSettle: contract.settle,
    ChannelUnlock: contract.unlock,
    CooperativeSettleCall: contract.cooperative_settle,
    PlasmaCreate: plasma_contract.create,
    PlasmaSubmitBlock: plasma_contract.submit_block,
    PlasmaDeposit: plasma_contract.deposit,
    PlasmaStartExit: plasma_contract.start_exit,
    PlasmaChallengeExit: plasma_contract.challenge_exit,
    PlasmaFinalizeExits: plasma_contract.finalize_exits,
}


def apply(state: ChainState, tx: Transaction, height: int) -> list[Event]:
    """Apply one transaction in block `height`; return its events or raise `ChainError`."""
    if tx.chain_id != state.chain_id:
        raise ChainError("wrong_chain", "transaction is for another chain")
    if isinstance(tx.call, FaucetGrant):
        return _apply_faucet_grant(state, tx, tx.call)
    rule = _RULES.get(type(tx.call))
    if rule is None:
        raise ChainError("malformed", f"no rule for {type(tx.call).__name__}")
    account = state.accounts.get(tx.sender)
    expected_nonce = account.nonce if account else 0
    if tx.nonce != expected_nonce:
        kind = "replayed" if tx.nonce < expected_nonce else "future"
        raise ChainError(
            "bad_nonce", f"{kind} nonce {tx.nonce}; the sender's next nonce is {expected_nonce}"
        )
    if tx.fee < state.min_fee:
        raise ChainError("fee_too_low", f"fee {tx.fee} is below the minimum {state.min_fee}")
    balance = account.balance if account else 0
    if tx.fee > balance:
        raise ChainError("insufficient_funds", f"fee {tx.fee} exceeds balance {balance}")
    ctx = CallContext(state, tx.sender, tx.nonce, height, balance - tx.fee)
    events = rule(ctx, tx.call)
    account = state.account(tx.sender)
    account.balance -= tx.fee
    account.nonce += 1
    state.burned += tx.fee
    return events


def _apply_faucet_grant(state: ChainState, tx: Transaction, grant: FaucetGrant) -> list[Event]:
    if not state.dev:
        raise ChainError("not_dev", "the faucet exists only on --dev chains")
    if tx.nonce != state.faucet_grants:
        raise ChainError("bad_nonce", f"faucet grant {tx.nonce}, expected {state.faucet_grants}")
    if grant.to == FAUCET_ADDRESS:
        raise ChainError("invalid_recipient", "cannot fund the faucet address")
    if state.supply + grant.amount > U64_MAX:
        raise ChainError("overflow", "the total supply would exceed u64")
    state.account(grant.to).balance += grant.amount
    state.supply += grant.amount
    state.faucet_grants += 1
    return []
