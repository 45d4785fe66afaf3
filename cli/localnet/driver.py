"""Carrying out a payment plan against running nodes: each payment started at its time, many
in flight at once, each a `send` on the payer's RPC socket that waits until final.

A payment whose payer cannot be asked (its node down or paused, in a chaos run) or that the
node refuses (no usable channel, no route: a pair that is not adjacent before routing lands)
is `failed` with that reason; one that has no final answer within `payment_timeout` is
`pending`. Nothing here raises for a single payment: the plan always runs to its end.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import trio

from p2pchan.errors import UserError
from p2pchan.net.rpc_client import RpcClient, RpcError
from p2pchan_cli.localnet.activity import PaymentOutcome, PlannedPayment

ANSWER_GRACE = 10.0  # beyond the node's own timeout, before a silent node counts as pending

OnOutcome = Callable[[PaymentOutcome], None]


async def pay_once(
    datadir: Path, payee_id: str, planned: PlannedPayment, payment_timeout: float
) -> PaymentOutcome:
    """One `send`, its outcome whatever happens."""
    started = time.perf_counter()

    def outcome(
        status: str, error: str | None, result: dict[str, Any] | None = None
    ) -> PaymentOutcome:
        result = result or {}
        route = result.get("route") or []
        return PaymentOutcome(
            planned,
            status,
            int(result.get("fee") or 0),
            (time.perf_counter() - started) * 1000,
            result.get("payment_hash"),
            error,
            tuple(str(hop.get("node_id")) for hop in route),
            tuple(int(hop.get("fee") or 0) for hop in route),
        )

    with trio.move_on_after(payment_timeout + ANSWER_GRACE):
        try:
            async with RpcClient.connect(datadir) as rpc:
                result = await rpc.call(
                    "send",
                    {"node_id": payee_id, "amount": planned.amount, "timeout": payment_timeout},
                )
        except RpcError as error:
            if error.rpc_code is None:
                return outcome("pending", f"payer lost during the payment: {error.message}")
            return outcome("failed", error.message)
        except UserError as error:  # cannot reach the payer's socket: nothing was started
            return outcome("failed", f"payer unreachable: {error}")
        return outcome(str(result["status"]), result.get("error"), result)
    return outcome("pending", "no answer from the payer's node")


async def run_plan(
    plan: Sequence[PlannedPayment],
    datadirs: dict[str, Path],
    node_ids: dict[str, str],
    *,
    concurrency: int,
    payment_timeout: float,
    on_outcome: OnOutcome,
) -> tuple[list[PaymentOutcome], float]:
    """Every planned payment at its time (later if `concurrency` are in flight); returns the
    outcomes in plan order and the seconds the whole plan took."""
    outcomes: list[PaymentOutcome | None] = [None] * len(plan)
    limiter = trio.CapacityLimiter(concurrency)
    began = trio.current_time()

    async def one(position: int, planned: PlannedPayment) -> None:
        try:
            done = await pay_once(
                datadirs[planned.source], node_ids[planned.destination], planned, payment_timeout
            )
        finally:
            limiter.release_on_behalf_of(planned)
        outcomes[position] = done
        on_outcome(done)

    async with trio.open_nursery() as nursery:
        for position, planned in enumerate(plan):
            await trio.sleep_until(began + planned.at)
            await limiter.acquire_on_behalf_of(planned)
            nursery.start_soon(one, position, planned)
    seconds = trio.current_time() - began
    return [outcome for outcome in outcomes if outcome is not None], seconds
