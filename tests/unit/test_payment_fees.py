"""The one fee formula and the default fee cap (DESIGN.md, Payments across hops)."""

from __future__ import annotations

import pytest

from p2pchan.core.payment.fees import default_fee_cap, forwarding_fee
from p2pchan.errors import LocalProtocolError


@pytest.mark.parametrize(
    ("amount", "base", "ppm", "fee"),
    [
        (1_000_000, 0, 1, 1),
        (999_999, 0, 1, 0),  # rounded down
        (1_000_000, 1000, 0, 1000),
        (123_456_789, 7, 2500, 7 + 308_641),  # 308,641.97... rounded down
        (0, 5, 1_000_000, 5),
        (2**64 - 1, 0, 1_000_000, 2**64 - 1),  # exact integers, no float rounding
    ],
)
def test_forwarding_fee_is_base_plus_rounded_down_proportional_part(
    amount: int, base: int, ppm: int, fee: int
) -> None:
    assert forwarding_fee(amount, base, ppm) == fee


@pytest.mark.parametrize(("amount", "base", "ppm"), [(-1, 0, 0), (1, -1, 0), (1, 0, -1)])
def test_negative_fee_inputs_are_refused(amount: int, base: int, ppm: int) -> None:
    with pytest.raises(LocalProtocolError):
        forwarding_fee(amount, base, ppm)


@pytest.mark.parametrize(
    ("amount", "cap"), [(0, 10), (1, 10), (200, 10), (219, 10), (220, 11), (10_000, 500)]
)
def test_the_default_fee_cap_is_five_percent_and_at_least_ten(amount: int, cap: int) -> None:
    assert default_fee_cap(amount) == cap


def test_a_negative_amount_has_no_fee_cap() -> None:
    with pytest.raises(LocalProtocolError):
        default_fee_cap(-1)
