"""The RPC methods of the node as a Plasma wallet: join, deposit, send, utxos, balance, exit,
exits, status (the CLI's `plasma ...` commands; their JSON fields are a contract).

Each is thin: it parses its parameters, finds the chain's watcher (`plasma_id`, or the one
chain joined), waits for that watcher to have caught up with layer 1 where it acts, and reads
or drives the watcher. Methods that wait (a payment until its block is checked and confirmed,
exits until layer 1 queued them) rely on the caller's deadline: the CLI's --timeout ends the
call, never the work it started.
"""

from __future__ import annotations

from typing import Any

from p2pchan.errors import UserError
from p2pchan.l1.plasma_state import ExitStatus
from p2pchan.net.api.context import NodeContext
from p2pchan.net.api.params import address, amount
from p2pchan.net.plasma_wallets import DEFAULT_WITHHOLD_TIMEOUT
from p2pchan.net.plasma_watch import PlasmaWatch
from p2pchan.net.rpc import RpcParamError, RpcServer, param
from p2pchan.plasma.wallet_view import OUTPUT_STATUSES, balance, output_status
from p2pchan.storage.plasma import list_outputs
from p2pchan.types import PlasmaId, parse_hex
from p2pchan.wire.plasma import is_valid_utxo_pos, split_utxo_pos

EXIT_STATUSES = {
    ExitStatus.QUEUED: "queued",
    ExitStatus.CHALLENGED: "challenged",
    ExitStatus.PAID: "paid",
}


def _position(params: dict[str, Any], name: str = "utxo_pos") -> int:
    value = param(params, name, int)
    if not is_valid_utxo_pos(value):
        raise RpcParamError(f"{name} {value} names no output (blknum·10^9 + txindex·10^4 + oindex)")
    return value


def register(rpc: RpcServer, node: NodeContext) -> None:
    wallets = node.plasma

    def chain_of(params: dict[str, Any]) -> PlasmaWatch:
        given = param(params, "plasma_id", str, default=None)
        plasma_id = None if given is None else PlasmaId(parse_hex(given, size=32, what="plasma id"))
        return wallets.get(plasma_id)

    async def caught_up(params: dict[str, Any]) -> PlasmaWatch:
        watch = chain_of(params)
        await watch.caught_up.wait()
        return watch

    async def join(params: dict[str, Any]) -> dict[str, Any]:
        host = param(params, "host", str)
        port = param(params, "port", int)
        if not 0 < port < 65536:
            raise RpcParamError(f"port {port} is out of range")
        timeout = param(params, "withhold_timeout", int, default=DEFAULT_WITHHOLD_TIMEOUT)
        watch = await wallets.join(host, port, timeout)
        await watch.caught_up.wait()
        return status_json(watch)

    async def deposit(params: dict[str, Any]) -> dict[str, Any]:
        value = amount(params, "amount")
        watch = await caught_up(params)
        position = await watch.deposit(value)
        return {"utxo_pos": position, "amount": value, "block": split_utxo_pos(position)[0]}

    async def send(params: dict[str, Any]) -> dict[str, Any]:
        to = address(param(params, "node_id", str))
        value = amount(params, "amount")
        wait = param(params, "wait", bool, default=True)
        watch = await caught_up(params)
        signed = await watch.pay(to, value)
        admitted = await watch.submit(signed)
        tx_hash = signed.tx_hash
        if wait and admitted is not None:
            await watch.wait_until(
                lambda: watch.sent_status(tx_hash) != "submitted" or watch.machine.bad is not None
            )
        return {
            "tx_hash": tx_hash.hex(),
            "block": None if admitted is None else admitted.blknum,
            "status": watch.sent_status(tx_hash),
            "to": to.hex(),
            "amount": value,
        }

    async def utxos(params: dict[str, Any]) -> list[dict[str, Any]]:
        watch = await caught_up(params)
        wanted = param(params, "status", str, default=None)
        if wanted is not None and wanted not in OUTPUT_STATUSES:
            raise RpcParamError(f"status must be one of {', '.join(OUTPUT_STATUSES)}")
        stored = await watch.database.run(lambda c: list_outputs(c, watch.plasma_id))
        listed = []
        for position, output in stored:
            status = output_status(watch.machine, position)
            if wanted is None or status == wanted:
                listed.append(
                    {
                        "utxo_pos": position,
                        "amount": output.amount,
                        "block": split_utxo_pos(position)[0],
                        "status": status,
                    }
                )
        return listed

    async def wallet_balance(params: dict[str, Any]) -> dict[str, Any]:
        watch = await caught_up(params)
        stored = await watch.database.run(lambda c: list_outputs(c, watch.plasma_id))
        sums = balance(watch.machine, [(position, output.amount) for position, output in stored])
        return {
            "spendable": sums.spendable,
            "pending": sums.pending,
            "exiting": sums.exiting,
            "exited": sums.exited,
        }

    async def exit_outputs(params: dict[str, Any]) -> list[dict[str, Any]]:
        every = param(params, "all", bool, default=False)
        cheat = param(params, "cheat", bool, default=False)
        wait = param(params, "wait", bool, default=True)
        if every == (params.get("utxo_pos") is not None):
            raise RpcParamError("give either utxo_pos or all")
        watch = await caught_up(params)
        machine = watch.machine
        if cheat:
            position = _position(params)
            await watch.exit_spent(position)
            return [exit_json(watch, position)]
        if every:
            asked = [position for position, _ in machine.spendable()]
        else:
            position = _position(params)
            asked = [] if machine.is_exiting(position) else [position]
            _check_exitable(watch, position)
        if asked:
            bond = watch.chain.exit_bond * len(asked)
            balance_l1 = (await node.link.account(node.identity.node_id)).pending_balance
            if balance_l1 < bond:
                raise UserError(
                    f"{len(asked)} exit(s) need a bond of {bond} on layer 1; the balance is "
                    f"{balance_l1}"
                )
            await watch.request_exits(asked)
        chosen = (
            sorted(p for p in machine.owned if output_status(machine, p) == "exiting")
            if every
            else [position]
        )
        if wait:
            await watch.wait_until(lambda: all(p in machine.exits.exits for p in asked))
        return [exit_json(watch, p) for p in chosen]

    async def exits(params: dict[str, Any]) -> list[dict[str, Any]]:
        watch = await caught_up(params)
        views = sorted(watch.machine.exits.exits.values(), key=lambda view: view.priority)
        return [
            {
                "utxo_pos": view.utxo_pos,
                "owner": view.owner.hex(),
                "amount": view.amount,
                "exitable_at": view.exitable_at,
                "status": EXIT_STATUSES[view.status],
                "ours": view.owner == node.identity.node_id,
                "paid": view.paid if view.status == ExitStatus.PAID else None,
            }
            for view in views
        ]

    async def status(params: dict[str, Any]) -> dict[str, Any]:
        return status_json(chain_of(params))

    for name, handler in (
        ("plasma_join", join),
        ("plasma_deposit", deposit),
        ("plasma_send", send),
        ("plasma_utxos", utxos),
        ("plasma_balance", wallet_balance),
        ("plasma_exit", exit_outputs),
        ("plasma_exits", exits),
        ("plasma_status", status),
    ):
        rpc.register(name, handler)


def _check_exitable(watch: PlasmaWatch, position: int) -> None:
    """A one-line refusal for an output the user cannot exit now."""
    machine = watch.machine
    status = output_status(machine, position) if position in machine.owned else None
    if status is None or status == "spent":
        raise UserError(f"output {position} is not ours (or is spent)")
    if status == "exited":
        raise UserError(f"output {position} has exited already")
    if position in machine.in_flight:
        raise UserError(f"output {position} is being spent by a payment not in a block yet")
    if not machine.confirmed(position):
        raise UserError(f"output {position} is not confirmed by its sender yet")


def exit_json(watch: PlasmaWatch, position: int) -> dict[str, Any]:
    view = watch.machine.exits.exits.get(position)
    output = watch.machine.output(position)
    return {
        "utxo_pos": position,
        "amount": output.amount if output is not None else None,
        "exitable_at": None if view is None else view.exitable_at,
        "status": "requested" if view is None else EXIT_STATUSES[view.status],
    }


def status_json(watch: PlasmaWatch) -> dict[str, Any]:
    """`plasma status` (and `plasma join`'s answer)."""
    machine, chain = watch.machine, watch.chain
    bad = machine.bad
    return {
        "plasma_id": chain.plasma_id.hex(),
        "operator": chain.operator.hex(),
        "block": machine.chain.checked_through,
        "chain_ok": bad is None,
        "reason": None if bad is None else f"block {bad.blknum}: {bad.reason}",
        "bad_block": None if bad is None else bad.blknum,
        "address": f"{chain.host}:{chain.port}",
        "operator_connected": watch.operator.connected,
        "caught_up": watch.caught_up.is_set(),
        "l1_height": watch.processed,
        "challenge_period": chain.challenge_period,
        "exit_bond": chain.exit_bond,
        "withhold_timeout": chain.withhold_timeout,
    }
