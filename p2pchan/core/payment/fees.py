"""The one fee formula of a forwarding hop, and the payer's default fee cap.

DESIGN.md: a hop forwarding `a` charges `base + a * ppm // 1_000_000`, on the forwarded amount,
rounded down. Routing, the `route` command and the mediator's check of an incoming lock all call
`forwarding_fee`, so the payer's arithmetic and the hop's can never disagree by a unit.
"""

from __future__ import annotations

from p2pchan.errors import LocalProtocolError

PPM = 1_000_000
FEE_CAP_PERCENT = 5
MIN_FEE_CAP = 10


def forwarding_fee(amount: int, base: int, ppm: int) -> int:
    """What a hop charges to forward `amount` under a (base, ppm) policy."""
    if amount < 0 or base < 0 or ppm < 0:
        raise LocalProtocolError(
            f"fees need non-negative inputs, got amount={amount} base={base} ppm={ppm}"
        )
    return base + amount * ppm // PPM


def default_fee_cap(amount: int) -> int:
    """The most a payer pays in fees unless told otherwise: 5 % of the amount, at least 10."""
    if amount < 0:
        raise LocalProtocolError(f"a fee cap needs a non-negative amount, got {amount}")
    return max(amount * FEE_CAP_PERCENT // 100, MIN_FEE_CAP)
