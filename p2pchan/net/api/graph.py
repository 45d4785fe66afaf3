"""The RPC methods about the network: graph (what gossip taught us), route (what a payment
would take now), setfees (our forwarding policy, gossiped at once).

`route` asks the same planner `send` and `pay` use (`core.payment.routes.plan`), with the same
balances, penalties and fee cap, so its hops, amounts and fee are exactly those a payment
started now would use.
"""

from __future__ import annotations

from typing import Any

from p2pchan.core.gossip.state import FeePolicy
from p2pchan.core.inputs import ActionSetFees
from p2pchan.core.outputs import NotifyFeesSet
from p2pchan.core.payment import routes
from p2pchan.core.routing.graph import ChannelPolicy
from p2pchan.errors import UserError
from p2pchan.net.api.context import NodeContext
from p2pchan.net.api.params import address, amount, channel_id
from p2pchan.net.driver import now_ms
from p2pchan.net.rpc import RpcParamError, RpcServer, param, parsed_param
from p2pchan.types import U64_MAX, ChannelId


def register(rpc: RpcServer, node: NodeContext) -> None:
    driver = node.driver

    async def graph(params: dict[str, Any]) -> dict[str, Any]:
        known = driver.state.graph
        nodes = []
        for node_id in sorted(known.node_ids()):
            info = known.node(node_id)
            nodes.append(
                {
                    "node_id": node_id.hex(),
                    "alias": info.alias if info is not None else "",
                    "addresses": list(info.addresses) if info is not None else [],
                }
            )
        channels = []
        for channel in sorted(known.channels(), key=lambda c: c.channel_id):
            channels.append(
                {
                    "channel_id": channel.channel_id.hex(),
                    "node1": channel.node1.hex(),
                    "node2": channel.node2.hex(),
                    "capacity": channel.capacity,
                    "settle_timeout": channel.settle_timeout,
                    "node1_policy": _policy(known.policy(channel.channel_id, channel.node1)),
                    "node2_policy": _policy(known.policy(channel.channel_id, channel.node2)),
                }
            )
        return {"nodes": nodes, "channels": channels}

    async def route(params: dict[str, Any]) -> dict[str, Any]:
        payee = parsed_param(params, "node_id", address)
        value = amount(params, "amount")
        state = driver.state
        if payee == state.us:
            raise UserError("cannot pay ourselves")
        plan = routes.plan(state, payee, value)
        return {
            "hops": [
                {
                    "node_id": hop.node_id.hex(),
                    "channel_id": hop.channel_id.hex(),
                    "amount": hop.amount,
                    "fee": hop.fee,
                }
                for hop in plan.route.hops
            ],
            "amount": value,
            "fee": plan.route.fee,
            "lock_timeout": plan.lock_timeout,
        }

    async def setfees(params: dict[str, Any]) -> dict[str, Any]:
        every = param(params, "all", bool, default=False)
        target = params.get("channel_id")
        if every == (target is not None):
            raise RpcParamError("give either a channel id or all")
        ids: tuple[ChannelId, ...] | None = None
        current = driver.state.fee_policy
        if target is not None:
            ids = (channel_id(target),)
            local = driver.state.network.local.get(ids[0])
            if local is not None:
                current = FeePolicy(local.update.body.fee_base, local.update.body.fee_ppm)
        base = _fee(params, "base", current.fee_base, U64_MAX)
        ppm = _fee(params, "ppm", current.fee_ppm, 2**32 - 1)
        policy = FeePolicy(fee_base=base, fee_ppm=ppm)
        outputs = await driver.step([ActionSetFees(policy, ids, now_ms())])
        [done] = [o for o in outputs if isinstance(o, NotifyFeesSet)]
        return {
            "fee_base": base,
            "fee_ppm": ppm,
            "updates": [
                {
                    "channel_id": update.body.channel_id.hex(),
                    "from_node": update.body.from_node.hex(),
                    "timestamp_ms": update.body.timestamp_ms,
                    "fee_base": update.body.fee_base,
                    "fee_ppm": update.body.fee_ppm,
                    "disabled": update.body.disabled,
                }
                for update in done.updates
            ],
        }

    for name, handler in (("graph", graph), ("route", route), ("setfees", setfees)):
        rpc.register(name, handler)


def _policy(policy: ChannelPolicy | None) -> dict[str, Any] | None:
    """One direction's announced policy (None: its node has announced none yet)."""
    if policy is None:
        return None
    return {
        "fee_base": policy.fee_base,
        "fee_ppm": policy.fee_ppm,
        "min_amount": policy.min_amount,
        "max_amount": policy.max_amount,
        "disabled": policy.disabled,
    }


def _fee(params: dict[str, Any], name: str, default: int, highest: int) -> int:
    value = params.get(name)
    if value is None:
        return default
    if type(value) is not int or not 0 <= value <= highest:
        raise RpcParamError(f"{name} must be an integer from 0 to {highest}")
    return value
