"""The invariant checker of chaos runs: a clean run passes, and each invariant fails on a
fixture that breaks it (a checker that cannot fail would be worse than none)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from p2pchan_cli.chaos.invariants import (
    INVARIANTS,
    ChainNonces,
    ChainProof,
    ChannelSample,
    Observations,
    Record,
    SettledEnd,
    check,
)

CHANNEL = "cc" * 32
PAID = "aa" * 32


def clean() -> Observations:
    """Alice paid Bob 100 over one channel that settled cooperatively... then a forced close
    in which layer 1 kept Alice's newest proof."""
    return Observations(
        supply=2000,
        burned=0,
        contract_holdings=0,
        granted={"alice": 1000, "bob": 1000},
        balances={"alice": 900, "bob": 1100},
        l1_fees={"alice": 0, "bob": 0},
        records={
            "alice": [
                Record(PAID, "out", 100, 0, "succeeded"),
                Record("bb" * 32, "out", 5, 0, "failed"),
            ],
            "bob": [Record(PAID, "in", 100, 0, "succeeded")],
        },
        honest={"alice", "bob"},
        samples=[
            ChannelSample("alice", CHANNEL, 1, 40, 0, 0, 1),
            ChannelSample("bob", CHANNEL, 0, 0, 1, 40, 0),
            ChannelSample("alice", CHANNEL, 2, 100, 0, 0, 2),
            ChannelSample("bob", CHANNEL, 0, 0, 2, 100, 0),
        ],
        chain_events=[
            ChainNonces(CHANNEL, {"alice": 1, "bob": 0}),
            ChainNonces(CHANNEL, {"alice": 2, "bob": 0}),
        ],
        chain_proofs=[
            ChainProof(CHANNEL, "alice", "bob", 2, 100, forced=True),
            ChainProof(CHANNEL, "bob", "alice", 0, 0, forced=True),
        ],
        deposits={CHANNEL: 500},
        settled=[SettledEnd("alice", CHANNEL, 400), SettledEnd("bob", CHANNEL, 100)],
    )


HOPPED = "ee" * 32


def hopped() -> Observations:
    """Alice paid Carol 100 through Bob, who kept a fee of 2 (the channels settled since)."""
    return Observations(
        supply=3000,
        burned=0,
        contract_holdings=0,
        granted={"alice": 1000, "bob": 1000, "carol": 1000},
        balances={"alice": 898, "bob": 1002, "carol": 1100},
        l1_fees={},
        records={
            "alice": [Record(HOPPED, "out", 100, 2, "succeeded")],
            "bob": [Record(HOPPED, "forward", 100, 2, "succeeded")],
            "carol": [Record(HOPPED, "in", 100, 0, "succeeded")],
        },
        honest={"alice", "bob", "carol"},
    )


def failing(observed: Observations) -> dict[str, str]:
    verdict = check(observed)
    return {name: detail for name, detail in verdict.invariants.items() if detail != "ok"}


def test_a_clean_run_passes_every_invariant() -> None:
    verdict = check(clean())
    assert verdict.ok and verdict.invariants == dict.fromkeys(INVARIANTS, "ok")


def test_money_made_from_nothing_breaks_conservation() -> None:
    observed = replace(clean(), supply=2500)
    assert (
        "supply 2500 is not what the faucet granted (2000)" in failing(observed)["1_conservation"]
    )
    observed = replace(clean(), other_accounts=7)
    assert "not the supply 2000" in failing(observed)["1_conservation"]
    observed = replace(clean(), contract_holdings=10, balances={"alice": 890, "bob": 1100})
    assert "the contract still holds 10" in failing(observed)["1_conservation"]


def test_books_that_do_not_match_the_chain_break_invariant_2() -> None:
    observed = replace(clean(), balances={"alice": 950, "bob": 1050})
    found = failing(observed)
    assert "alice holds 950 on layer 1, its records say 900" in found["2_books"]
    assert "bob holds 1050 on layer 1, its records say 1100" in found["2_books"]


def test_a_payee_without_the_payers_payment_breaks_invariant_2() -> None:
    records = dict(clean().records, bob=[Record(PAID, "in", 90, 0, "succeeded")])
    observed = replace(
        clean(),
        records=records,
        balances={"alice": 900, "bob": 1090},
        supply=1990,
        granted={"alice": 1000, "bob": 990},
    )
    assert "paid 100, bob received 90" in failing(observed)["2_books"]
    records = dict(clean().records, bob=[Record(PAID, "in", 100, 0, "failed")])
    observed = replace(
        clean(),
        records=records,
        balances={"alice": 900, "bob": 1000},
        supply=1900,
        granted={"alice": 1000, "bob": 900},
    )
    assert "succeeded for its payer alice but no payee received it" in failing(observed)["2_books"]


def test_a_multi_hop_payment_whose_fees_add_up_passes() -> None:
    assert check(hopped()).ok


def test_fees_that_do_not_add_up_break_invariant_2() -> None:
    records = dict(hopped().records, bob=[Record(HOPPED, "forward", 100, 3, "succeeded")])
    observed = replace(
        hopped(), records=records, balances={"alice": 898, "bob": 1003, "carol": 1100}
    )
    assert "its payer paid 2 in fees, its mediators earned 3" in failing(observed)["2_books"]


def test_a_mediator_paid_for_a_failed_payment_breaks_invariant_2() -> None:
    records = {
        "alice": [Record(HOPPED, "out", 100, 2, "failed")],
        "bob": [Record(HOPPED, "forward", 100, 2, "succeeded")],
        "carol": [Record(HOPPED, "in", 100, 0, "failed")],
    }
    observed = replace(
        hopped(), records=records, balances={"alice": 1000, "bob": 1002, "carol": 998}
    )
    found = failing(observed)["2_books"]
    assert "failed for its payer but bob earned a fee forwarding it" in found


def test_a_payee_paid_while_its_payer_failed_breaks_invariant_2_unless_an_attacker_mediated() -> (
    None
):
    records = {
        "alice": [Record(HOPPED, "out", 100, 2, "failed")],
        "bob": [Record(HOPPED, "forward", 100, 2, "failed")],
        "carol": [Record(HOPPED, "in", 100, 0, "succeeded")],
    }
    balances = {"alice": 1000, "bob": 900, "carol": 1100}
    observed = replace(hopped(), records=records, balances=balances)
    assert "received by carol but failed for its payer" in failing(observed)["2_books"]
    # Bob withheld the secret upstream: he paid Carol and lost it; nobody honest lost anything
    attacked = replace(observed, honest={"alice", "carol"})
    assert check(attacked).ok


def test_a_channel_whose_ends_were_paid_more_than_its_deposits_breaks_conservation() -> None:
    ends = [SettledEnd("alice", CHANNEL, 410), SettledEnd("bob", CHANNEL, 100)]
    found = failing(replace(clean(), settled=ends))["1_conservation"]
    assert "its ends were paid 410 + 100 = 510, 500 was deposited" in found
    ends = [SettledEnd("alice", CHANNEL, 400), SettledEnd("bob", CHANNEL, None)]
    found = failing(replace(clean(), settled=ends))["1_conservation"]
    assert "bob never saw it settle" in found


def test_an_honest_node_that_lost_funds_breaks_invariant_3_and_an_attacker_does_not() -> None:
    observed = replace(clean(), balances={"alice": 900, "bob": 1050}, burned=50)
    assert failing(observed)["3_no_honest_loss"] == "honest bob lost 50"
    observed = replace(observed, honest={"alice"})
    assert "3_no_honest_loss" not in failing(observed)


def test_a_payment_left_pending_breaks_invariant_4() -> None:
    records = dict(
        clean().records,
        alice=[*clean().records["alice"], Record("dd" * 32, "out", 1, 0, "pending")],
    )
    assert (
        "alice has 1 payments still pending (dddddddddddd)"
        in failing(replace(clean(), records=records))["4_payments_final"]
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {
                "samples": [
                    ChannelSample("alice", CHANNEL, 2, 100, 0, 0, 2),
                    ChannelSample("alice", CHANNEL, 1, 40, 0, 0, 2),
                ]
            },
            "sent nonce fell from 2 to 1",
        ),
        (
            {
                "samples": [
                    ChannelSample("bob", CHANNEL, 0, 0, 2, 100, 0),
                    ChannelSample("bob", CHANNEL, 0, 0, 2, 120, 0),
                ]
            },
            "received transferred changed without a higher nonce",
        ),
        (
            {
                "samples": [
                    ChannelSample("alice", CHANNEL, 2, 100, 0, 0, 5),
                    ChannelSample("alice", CHANNEL, 2, 100, 0, 0, 4),
                ]
            },
            "signed nonce fell from 5 to 4",
        ),
        (
            {
                "chain_events": [
                    ChainNonces(CHANNEL, {"alice": 2}),
                    ChainNonces(CHANNEL, {"alice": 1}),
                ]
            },
            "layer 1's nonce of alice fell from 2 to 1",
        ),
        (
            {"chain_proofs": [ChainProof(CHANNEL, "alice", "bob", 9, 100, forced=True)]},
            "layer 1 holds nonce 9, the sender signed up to 2",
        ),
        (
            {"chain_proofs": [ChainProof(CHANNEL, "alice", "bob", 2, 150, forced=True)]},
            "layer 1 holds transferred 150, no node agreed past 100",
        ),
        (
            {"chain_proofs": [ChainProof(CHANNEL, "alice", "bob", 1, 40, forced=True)]},
            "a stale proof won (40 transferred; honest bob held 100)",
        ),
    ],
)
def test_falling_nonces_or_amounts_break_invariant_5(
    change: dict[str, object], message: str
) -> None:
    found = failing(replace(clean(), **change))  # type: ignore[arg-type]
    assert message in found["5_monotonic"]


def test_every_violation_is_listed_with_its_invariant() -> None:
    observed = replace(clean(), supply=2500, balances={"alice": 950, "bob": 1050})
    verdict = check(observed)
    assert not verdict.ok
    assert all(v.split(":")[0] in INVARIANTS for v in verdict.violations)
    assert any(v.startswith("1_conservation: supply 2500") for v in verdict.violations)
