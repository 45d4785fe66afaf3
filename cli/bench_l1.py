"""`p2pchan bench l1`: signed transactions verified and included per second, durably.

A real layer-1 process runs with the block log fsynced every block. The benchmark pre-signs
transfers from many accounts (signing is the client's cost, not the chain's), pipelines them over
a few connections, and stops the clock when the block holding the last one is durable.
"""

from __future__ import annotations

import os
import platform
import random
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from p2pchan.crypto.keys import Identity
from p2pchan.errors import P2pchanError
from p2pchan.l1.api import MAX_REQUEST_SIZE, REQUESTS, RESPONSES, SubmitRequest, SubmitResult
from p2pchan.l1.client import L1Client
from p2pchan.l1.transactions import Transfer, sign_transaction
from p2pchan.types import ChainId
from p2pchan.wire.framing import FrameDecoder, frame
from p2pchan_cli.processes import l1_process


@dataclass(frozen=True)
class L1BenchConfig:
    transactions: int = 20_000
    senders: int = 32
    connections: int = 4
    block_time: float = 0.1


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def _presign(
    chain_id: ChainId, senders: list[Identity], count: int, seed: int
) -> list[list[bytes]]:
    """Per sender, its framed submit requests in nonce order."""
    rng = random.Random(seed)
    recipients = [Identity(rng.randbytes(32)).node_id for _ in range(64)]
    frames: list[list[bytes]] = [[] for _ in senders]
    for index in range(count):
        which = index % len(senders)
        nonce = len(frames[which])
        signed = sign_transaction(
            senders[which], chain_id, nonce, Transfer(rng.choice(recipients), 1)
        )
        request = SubmitRequest(index + 1, signed, False)
        frames[which].append(frame(REQUESTS.encode(request), max_size=MAX_REQUEST_SIZE))
    return frames


async def _pipeline(host: str, port: int, frames: list[bytes], results: list[int]) -> None:
    """Send every frame on one connection and collect the block of each admitted transaction."""
    stream = await trio.open_tcp_stream(host, port)
    async with stream:

        async def send_all() -> None:
            for start in range(0, len(frames), 256):
                await stream.send_all(b"".join(frames[start : start + 256]))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_all)
            decoder = FrameDecoder(max_size=1 << 20)
            received = 0
            while received < len(frames):
                data = await stream.receive_some(1 << 20)
                if not data:
                    raise P2pchanError("layer 1 closed the benchmark connection")
                for body in decoder.feed(data):
                    response = RESPONSES.decode(body)
                    if not isinstance(response, SubmitResult):
                        raise P2pchanError(f"transaction refused: {response}")
                    results.append(response.block)
                    received += 1


async def run_l1_bench(config: L1BenchConfig) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="p2pchan-bench-l1-"))
    options = ["--port", "0", "--dev", "--block-time", str(config.block_time)]
    chain = l1_process(workdir, *options, log_level="warning")
    try:
        ready = await chain.start()
        host, port = ready["host"], int(ready["port"])
        senders = [Identity(bytes([i % 256, i // 256]) * 16) for i in range(config.senders)]
        async with L1Client.connect(host, port) as client:
            chain_id = (await client.status()).chain_id
            for sender in senders:
                await client.faucet(sender.node_id, config.transactions, wait=False)
            await client.mine()
            sign_started = time.perf_counter()
            per_sender = _presign(chain_id, senders, config.transactions, seed=1)
            sign_seconds = time.perf_counter() - sign_started
            per_connection: list[list[bytes]] = [[] for _ in range(config.connections)]
            for index, frames in enumerate(per_sender):
                per_connection[index % config.connections].extend(frames)
            blocks: list[int] = []
            start_height = (await client.status()).height
            started = time.perf_counter()
            async with trio.open_nursery() as nursery:
                for frames in per_connection:
                    nursery.start_soon(_pipeline, host, port, frames, blocks)
            admitted = time.perf_counter()
            final_height = await client.wait_for_height(max(blocks))
            included = time.perf_counter()
            status = await client.status()
    finally:
        await chain.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    seconds = included - started
    return {
        "transactions": config.transactions,
        "senders": config.senders,
        "connections": config.connections,
        "block_time": config.block_time,
        "blocks": final_height - start_height,
        "seconds": round(seconds, 3),
        "transactions_per_s": round(config.transactions / seconds),
        "admitted_per_s": round(config.transactions / (admitted - started)),
        "client_sign_per_s": round(config.transactions / sign_seconds),
        "height": status.height,
        "machine": machine_description(),
    }
