"""The operator's control RPC (JSON-RPC on `rpc.sock`): what it is, and the --dev attacks.

`plasma_info` describes the running child chain. `plasma_attack` switches on one attack of
DESIGN.md for the next block, on a `--dev` operator only (anything else is refused with the
code `not_dev`): `withhold-next` (commit its root, never serve it), `mint` (an output of
`amount` from nothing, to the operator) and `double-spend` (spend `utxo_pos` again, for the
operator, signed by the operator). Honest watchers must find each and make their users exit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from p2pchan.net.rpc import RpcParamError, param, parsed_param
from p2pchan.types import parse_amount

if TYPE_CHECKING:
    from p2pchan.plasma.operator_server import Operator

ATTACKS = ("withhold-next", "mint", "double-spend")


def register_operator_rpc(operator: Operator) -> None:
    machine = operator.machine

    async def info(_params: dict[str, Any]) -> dict[str, Any]:
        return {
            "plasma_id": operator.plasma_id.hex(),
            "operator": operator.identity.node_id.hex(),
            "chain_id": operator.chain_id.hex(),
            "dev": machine.dev,
            "next_block": machine.next_blknum,
            "committed_block": max(machine.committed, default=0),
            "pending_transactions": machine.pending_count,
            "l1_height": operator.chain.height,
        }

    async def attack(params: dict[str, Any]) -> dict[str, Any]:
        kind = param(params, "attack", str)
        if kind == "withhold-next":
            return {"attack": kind, "block": machine.attack_withhold_next()}
        if kind == "mint":
            amount = parsed_param(params, "amount", parse_amount)
            tx_hash = machine.attack_mint(amount)
        elif kind == "double-spend":
            position = parsed_param(params, "utxo_pos", lambda value: int(parse_amount(value)))
            tx_hash = machine.attack_double_spend(position)
        else:
            raise RpcParamError(f"attack must be one of {', '.join(ATTACKS)}")
        return {"attack": kind, "block": machine.next_blknum, "tx_hash": tx_hash.hex()}

    operator.rpc.register("plasma_info", info)
    operator.rpc.register("plasma_attack", attack)
