"""Carrying out the node's layer-1 duties: register a secret, close, update, settle, unlock,
settle cooperatively (the channels'), and start, challenge and finalize exits (the Plasma
watchers', through `request_call`).

Each duty is submitted once at a time (duplicates are skipped while one is under way), waits for
its block, and is forgotten afterwards, so a duty the core still asks for on a later block (a
transaction lost in a layer-1 crash, or refused because it was too early) is simply tried again.
A refusal is logged with its reason (once a minute per duty while it repeats); nothing here
ever raises into the node.
"""

from __future__ import annotations

import structlog
import trio

from p2pchan.core.outputs import (
    ContractSendClose,
    ContractSendCooperativeSettle,
    ContractSendRegisterSecret,
    ContractSendSettle,
    ContractSendUnlock,
    ContractSendUpdate,
)
from p2pchan.errors import ChainError
from p2pchan.l1.transactions import (
    Call,
    ChannelClose,
    ChannelSettle,
    ChannelUnlock,
    ChannelUpdate,
    CooperativeSettleCall,
    RegisterSecret,
)
from p2pchan.l1.wallet import Wallet
from p2pchan.log import Throttle

log = structlog.get_logger(__name__)

ChainDuty = (
    ContractSendRegisterSecret
    | ContractSendClose
    | ContractSendUpdate
    | ContractSendSettle
    | ContractSendUnlock
    | ContractSendCooperativeSettle
)


def duty_call(duty: ChainDuty) -> tuple[str, Call]:
    """The transaction for a duty, and a key that identifies duplicates."""
    channel = duty.channel_id.hex()
    if isinstance(duty, ContractSendRegisterSecret):
        return f"register:{duty.secret.hex()}", RegisterSecret(duty.secret)
    if isinstance(duty, ContractSendClose):
        return f"close:{channel}", ChannelClose(duty.channel_id, duty.proofs)
    if isinstance(duty, ContractSendUpdate):
        return f"update:{channel}", ChannelUpdate(duty.channel_id, duty.proofs)
    if isinstance(duty, ContractSendSettle):
        return f"settle:{channel}", ChannelSettle(duty.channel_id)
    if isinstance(duty, ContractSendUnlock):
        return f"unlock:{channel}:{duty.sender.hex()}", ChannelUnlock(
            duty.channel_id, duty.sender, duty.locks
        )
    return f"coop:{channel}", CooperativeSettleCall(
        duty.channel_id, duty.terms, duty.signature_a, duty.signature_b
    )


class ChainActions:
    def __init__(self, wallet: Wallet) -> None:
        self.wallet = wallet
        self._under_way: set[str] = set()
        self._refusals = Throttle()
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def request(self, duty: ChainDuty) -> None:
        key, call = duty_call(duty)
        self.request_call(key, call)

    def under_way(self, key: str) -> bool:
        return key in self._under_way

    def request_call(self, key: str, call: Call) -> None:
        """Submit `call` unless the duty named `key` (`kind:...`) is under way already."""
        if key in self._under_way or self._nursery is None:
            return
        self._under_way.add(key)
        self._nursery.start_soon(self._submit, key, call)

    async def _submit(self, key: str, call: Call) -> None:
        try:
            result = await self.wallet.send(call, wait=True)
            log.info("chain_duty_included", duty=key.split(":")[0], block=result.block)
        except ChainError as error:
            # Asked for again on every block until done: one line a minute per duty.
            if (repeated := self._refusals.allow(key)) is not None:
                log.info(
                    "chain_duty_refused",
                    duty=key.split(":")[0],
                    code=error.code,
                    reason=error.message,
                    repeated=repeated,
                )
        finally:
            self._under_way.discard(key)
