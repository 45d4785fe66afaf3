"""`p2pchan demo`: a guided tour of what p2pchan does today, for real, cleaned up afterwards.

It starts a real layer-1 process on a free port in a temporary directory, funds two accounts,
opens and funds a channel, exchanges signed balance proofs off-chain, lets Alice cheat by closing
with a stale proof, lets Bob dispute it with Alice's newest proof, settles, and checks every
balance and the conservation of money.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import click
from rich.console import Console

from p2pchan.core.balance_proof import (
    BalanceProof,
    SignedBalanceProof,
    counter_sign,
    sign_balance_proof,
)
from p2pchan.core.locks import EMPTY_LOCKSROOT
from p2pchan.crypto.keys import Identity
from p2pchan.errors import P2pchanError
from p2pchan.l1.client import L1Client
from p2pchan.l1.transactions import (
    ChannelClose,
    ChannelDeposit,
    ChannelSettle,
    ChannelUpdate,
)
from p2pchan.l1.wallet import Wallet
from p2pchan.types import ChainId, ChannelId
from p2pchan_cli.common import global_options, run
from p2pchan_cli.processes import l1_process

SETTLE_TIMEOUT = 20
FUNDING = 1_000


class Tour:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.step_number = 0

    def step(self, text: str) -> None:
        self.step_number += 1
        self.console.print(f"\n[bold cyan]{self.step_number}.[/] [bold]{text}[/]")

    def say(self, text: str) -> None:
        self.console.print(f"   {text}")


def _proof(
    sender: Identity, chain_id: ChainId, channel_id: ChannelId, nonce: int, transferred: int
) -> SignedBalanceProof:
    return sign_balance_proof(
        sender,
        BalanceProof(chain_id, channel_id, sender.node_id, nonce, transferred, 0, EMPTY_LOCKSROOT),
    )


async def _tour(tour: Tour, workdir: Path) -> None:
    tour.step("Start a layer-1 node (a real process, blocks on demand)")
    chain = l1_process(workdir / "l1", "--port", "0", "--block-time", "0", "--dev")
    ready = await chain.start()
    tour.say(
        f"layer 1 listening on {ready['host']}:{ready['port']}, chain {ready['chain_id'][:16]}…"
    )
    try:
        async with L1Client.connect(ready["host"], int(ready["port"])) as client:
            await _channel_story(tour, client)
    finally:
        await chain.stop()
        tour.say("layer 1 stopped")


async def _channel_story(tour: Tour, client: L1Client) -> None:
    chain_id = (await client.status()).chain_id
    alice, bob = Identity.generate(), Identity.generate()
    tour.step("Fund Alice and Bob from the dev faucet")
    for who in (alice, bob):
        await client.faucet(who.node_id, FUNDING)
    await client.mine()
    tour.say(f"Alice {alice.node_id.hex()[:12]}… and Bob {bob.node_id.hex()[:12]}…: {FUNDING} each")

    tour.step("Alice opens a channel with Bob; both deposit")
    alice_wallet, bob_wallet = Wallet(client, alice, chain_id), Wallet(client, bob, chain_id)
    channel_id, opening = await alice_wallet.open_channel(bob.node_id, SETTLE_TIMEOUT)
    await alice_wallet.send(ChannelDeposit(channel_id, alice.node_id, 600))
    await bob_wallet.send(ChannelDeposit(channel_id, bob.node_id, 400))
    height = await client.mine()
    tour.say(f"channel {channel_id.hex()[:16]}… opened in block {opening.block}: 600 + 400")

    tour.step("Off-chain: signed balance proofs, each counter-signed by its receiver")
    alice_proofs = [
        counter_sign(bob, _proof(alice, chain_id, channel_id, nonce, total))
        for nonce, total in ((1, 100), (2, 250), (3, 300))
    ]
    bob_proof = counter_sign(alice, _proof(bob, chain_id, channel_id, 1, 50))
    tour.say("Alice pays Bob 100, 150, 50 (proofs 1-3, 300 in all); Bob pays Alice 50")

    tour.step("Alice cheats: she closes with her stale proof 1 (as if she had paid only 100)")
    await alice_wallet.send(ChannelClose(channel_id, (alice_proofs[0], bob_proof)))
    height = await client.mine()
    tour.say(f"closed in block {height}; settlement window: {SETTLE_TIMEOUT} blocks")

    tour.step("Bob disputes at once with Alice's newest proof (nonce 3)")
    await bob_wallet.send(ChannelUpdate(channel_id, (alice_proofs[-1],)))
    await client.mine()
    record = await client.channel(channel_id)
    assert record is not None
    tour.say(f"contract now holds Alice's proof nonce {record.proof_a.nonce}")

    tour.step("After the window, anyone settles")
    await client.mine(SETTLE_TIMEOUT)
    await bob_wallet.send(ChannelSettle(channel_id))
    await client.mine()

    alice_final = (await client.account(alice.node_id)).balance
    bob_final = (await client.account(bob.node_id)).balance
    tour.say(f"Alice: {alice_final}   (1000 - 600 deposited + 600 - 300 paid + 50 received)")
    tour.say(f"Bob:   {bob_final}   (1000 - 400 deposited + 400 + 300 received - 50 paid)")
    if (alice_final, bob_final) != (750, 1250):
        raise P2pchanError(f"unexpected final balances {alice_final}, {bob_final}")
    status = await client.status()
    tour.say(f"conservation: balances {alice_final + bob_final} = faucet grants {status.supply}")


@click.command()
@global_options
@click.pass_context
def demo(ctx: click.Context) -> None:
    """A guided tour: layer 1, a channel, off-chain proofs, a cheating close defeated."""
    tour = Tour(Console(highlight=False))
    workdir = Path(tempfile.mkdtemp(prefix="p2pchan-demo-"))
    try:
        run(ctx, lambda: _tour(tour, workdir))
    except BaseException:
        tour.console.print(f"\n[red]demo failed; logs kept in {workdir}[/]")
        raise
    shutil.rmtree(workdir, ignore_errors=True)
    tour.console.print("\n[bold green]demo complete[/] — temporary files removed")
