"""Micro-benchmark of onion payloads: microseconds per build, peel, failure made, wrapped, read.

Peeling is on a mediator's hot path (once per forwarded lock), so the X25519 multiplications
each operation makes are counted too, next to the cost of one multiplication on this machine.
Prints one JSON document. Run: `.venv/bin/python benchmarks/sphinx_micro.py [--repeat N]`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import timeit
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import nacl.bindings

from p2pchan.crypto import sphinx
from p2pchan.crypto.keys import Identity
from p2pchan.crypto.sphinx import (
    FINAL_PAYLOAD_SIZE,
    HOP_PAYLOAD_SIZE,
    OnionHop,
    build_onion,
    peel_onion,
)
from p2pchan.crypto.sphinx_failure import failure_packet, read_failure, wrap_failure

NODES = [Identity(hashlib.sha256(b"bench %d" % index).digest()) for index in range(20)]
SESSION_KEY = hashlib.sha256(b"bench session").digest()
SECRETHASH = hashlib.sha256(b"bench secret").digest()
MESSAGE = bytes(100)


def route(hops: int) -> list[OnionHop]:
    sizes = [HOP_PAYLOAD_SIZE] * (hops - 1) + [FINAL_PAYLOAD_SIZE]
    return [OnionHop(NODES[index].node_id, bytes(size)) for index, size in enumerate(sizes)]


def microseconds(operation: Callable[[], object], repeat: int) -> dict[str, float]:
    """Best and median of `repeat` timings, each of enough calls to last ~0.2 s."""
    timer = timeit.Timer(operation)
    calls, _ = timer.autorange()
    runs = [seconds / calls * 1e6 for seconds in timer.repeat(repeat=repeat, number=calls)]
    return {"best_us": round(min(runs), 1), "median_us": round(statistics.median(runs), 1)}


@contextmanager
def counting_x25519() -> Iterator[dict[str, int]]:
    """Count libsodium X25519 calls made through the sphinx module while inside."""
    counts = {"x25519": 0}
    real_mult, real_base = nacl.bindings.crypto_scalarmult, nacl.bindings.crypto_scalarmult_base

    def mult(scalar: bytes, point: bytes) -> bytes:
        counts["x25519"] += 1
        return bytes(real_mult(scalar, point))

    def base(scalar: bytes) -> bytes:
        counts["x25519"] += 1
        return bytes(real_base(scalar))

    nacl.bindings.crypto_scalarmult, nacl.bindings.crypto_scalarmult_base = mult, base
    try:
        yield counts
    finally:
        nacl.bindings.crypto_scalarmult = real_mult
        nacl.bindings.crypto_scalarmult_base = real_base


def x25519_count(operation: Callable[[], object]) -> int:
    with counting_x25519() as counts:
        operation()
    return counts["x25519"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per operation")
    repeat = parser.parse_args().repeat

    route3, route20 = route(3), route(20)
    onion3 = build_onion(route3, SESSION_KEY, SECRETHASH)
    onion20 = build_onion(route20, SESSION_KEY, SECRETHASH)
    first_key, last_key = NODES[0].x25519_private_key(), NODES[2].x25519_private_key()
    middle = peel_onion(onion3.packet, first_key, SECRETHASH).next_packet
    assert middle is not None
    last = peel_onion(middle, NODES[1].x25519_private_key(), SECRETHASH).next_packet
    assert last is not None
    node_ids20 = [node.node_id for node in NODES]
    sealed3 = failure_packet(onion3.shared_secrets[2], MESSAGE)
    returned3 = wrap_failure(
        onion3.shared_secrets[0], wrap_failure(onion3.shared_secrets[1], sealed3)
    )
    returned20 = failure_packet(onion20.shared_secrets[19], MESSAGE)
    for secret in reversed(onion20.shared_secrets[:19]):
        returned20 = wrap_failure(secret, returned20)
    assert read_failure(onion20.shared_secrets, returned20) == (19, MESSAGE)

    point = nacl.bindings.crypto_scalarmult_base(SESSION_KEY)
    operations: dict[str, Callable[[], object]] = {
        "x25519_one_multiplication": lambda: nacl.bindings.crypto_scalarmult(SESSION_KEY, point),
        "build_3_hops": lambda: build_onion(route3, SESSION_KEY, SECRETHASH),
        "build_20_hops": lambda: build_onion(route20, SESSION_KEY, SECRETHASH),
        "shared_secrets_20_hops": lambda: sphinx.shared_secrets(node_ids20, SESSION_KEY),
        "peel_forwarding_hop": lambda: peel_onion(onion3.packet, first_key, SECRETHASH),
        "peel_last_hop": lambda: peel_onion(last, last_key, SECRETHASH),
        "peel_refused_bad_mac": lambda: _refused(onion3.packet, last_key),
        "failure_packet": lambda: failure_packet(onion3.shared_secrets[2], MESSAGE),
        "wrap_failure": lambda: wrap_failure(onion3.shared_secrets[1], sealed3),
        "read_failure_3_hops_last_failed": lambda: read_failure(onion3.shared_secrets, returned3),
        "read_failure_20_hops_last_failed": lambda: read_failure(
            onion20.shared_secrets, returned20
        ),
    }
    results: dict[str, Any] = {name: microseconds(op, repeat) for name, op in operations.items()}
    for name in ("build_3_hops", "build_20_hops", "peel_forwarding_hop", "peel_last_hop"):
        results[name]["x25519"] = x25519_count(operations[name])
    results["peel_refused_bad_mac"]["x25519"] = x25519_count(operations["peel_refused_bad_mac"])
    results["onion_size"] = sphinx.ONION_SIZE
    print(json.dumps(results, indent=1))


def _refused(packet: bytes, wrong_key: bytes) -> None:
    try:
        peel_onion(packet, wrong_key, SECRETHASH)
    except sphinx.OnionError:
        return
    raise AssertionError("a packet for another node was peeled")


if __name__ == "__main__":
    main()
