"""Parameters the RPC methods share: node ids, channel ids, amounts, worded as the CLI words
them."""

from __future__ import annotations

from typing import Any

from p2pchan.errors import UserError
from p2pchan.net.rpc import RpcParamError
from p2pchan.types import KEY_SIZE, Address, ChannelId, NodeId, parse_hex, positive_amount


def address(text: Any) -> Address:
    return Address(parse_hex(str(text), size=KEY_SIZE, what="node id"))


def node_id(text: Any) -> NodeId:
    return NodeId(address(text))


def channel_id(text: Any) -> ChannelId:
    return ChannelId(parse_hex(str(text), size=32, what="channel id"))


def amount(params: dict[str, Any], name: str) -> int:
    """A positive u64 amount."""
    if params.get(name) is None:
        raise RpcParamError(f"missing parameter {name!r}")
    try:
        return positive_amount(params[name], name)
    except UserError as error:
        raise RpcParamError(str(error)) from None
