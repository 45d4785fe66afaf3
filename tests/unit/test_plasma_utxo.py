"""The one rule for a valid Plasma transaction, and the UTXO set it is checked against."""

from __future__ import annotations

import pytest

from p2pchan.errors import PlasmaError
from p2pchan.plasma.utxo import UtxoSet, apply_transaction, check_transaction
from p2pchan.types import PlasmaId
from p2pchan.wire.plasma import (
    PlasmaTransaction,
    SignedPlasmaTx,
    TxInput,
    TxOutput,
    decode_signed_tx,
    sign_tx,
    split_utxo_pos,
    utxo_pos,
)
from tests.unit.chain_helpers import identity

ALICE, BOB, CAROL = identity(1), identity(2), identity(3)
PLASMA = PlasmaId(b"\x42" * 32)
A = utxo_pos(1, 0, 0)  # Alice 10
B = utxo_pos(2, 0, 0)  # Bob 20
C = utxo_pos(1000, 0, 1)  # Alice 5


def utxos() -> UtxoSet:
    result = UtxoSet()
    result.add(A, TxOutput(ALICE.node_id, 10))
    result.add(B, TxOutput(BOB.node_id, 20))
    result.add(C, TxOutput(ALICE.node_id, 5))
    return result


def tx(
    spends: list[int], outputs: list[tuple[bytes, int]], *, plasma_id: PlasmaId = PLASMA
) -> PlasmaTransaction:
    return PlasmaTransaction(
        plasma_id,
        tuple(TxInput(*split_utxo_pos(position)) for position in spends),
        tuple(TxOutput(owner, amount) for owner, amount in outputs),
    )


def check(signed: SignedPlasmaTx, the_set: UtxoSet | None = None) -> list[tuple[int, TxOutput]]:
    return check_transaction(the_set or utxos(), decode_signed_tx(signed), PLASMA)


def refused(signed: SignedPlasmaTx, code: str, the_set: UtxoSet | None = None) -> None:
    with pytest.raises(PlasmaError) as caught:
        check(signed, the_set)
    assert caught.value.code == code, caught.value


def test_valid_transactions_return_what_they_spend() -> None:
    one = sign_tx(tx([A], [(BOB.node_id, 7), (ALICE.node_id, 3)]), [ALICE])
    assert check(one) == [(A, TxOutput(ALICE.node_id, 10))]
    two_owners = sign_tx(tx([A, B], [(CAROL.node_id, 30)]), [ALICE, BOB])
    assert [(position, output.amount) for position, output in check(two_owners)] == [
        (A, 10),
        (B, 20),
    ]


def test_refusals() -> None:
    refused(
        sign_tx(tx([A], [(BOB.node_id, 10)], plasma_id=PlasmaId(bytes(32))), [ALICE]),
        "wrong_plasma",
    )
    refused(SignedPlasmaTx(tx([], [(BOB.node_id, 10)]).encode(), ()), "no_inputs")
    refused(sign_tx(tx([A], []), [ALICE]), "no_outputs")
    refused(sign_tx(tx([A], [(BOB.node_id, 10), (ALICE.node_id, 0)]), [ALICE]), "zero_amount")
    refused(sign_tx(tx([A, A], [(BOB.node_id, 20)]), [ALICE, ALICE]), "duplicate_input")
    refused(sign_tx(tx([utxo_pos(9, 0, 0)], [(BOB.node_id, 1)]), [ALICE]), "missing_input")
    refused(sign_tx(tx([A], [(BOB.node_id, 11)]), [ALICE]), "unbalanced")
    refused(sign_tx(tx([A], [(BOB.node_id, 9)]), [ALICE]), "unbalanced")
    refused(sign_tx(tx([B], [(ALICE.node_id, 20)]), [ALICE]), "bad_signature")  # Bob's coin
    refused(sign_tx(tx([A, B], [(CAROL.node_id, 30)]), [BOB, ALICE]), "bad_signature")


def test_a_spent_input_is_refused_as_spent() -> None:
    the_set = utxos()
    first = sign_tx(tx([A], [(BOB.node_id, 10)]), [ALICE])
    check(first, the_set)
    apply_transaction(the_set, decode_signed_tx(first), 2000, 0)
    refused(sign_tx(tx([A], [(CAROL.node_id, 10)]), [ALICE]), "spent_input", the_set)
    assert the_set.get(utxo_pos(2000, 0, 0)) == TxOutput(BOB.node_id, 10)
    assert the_set.ever(A) == TxOutput(ALICE.node_id, 10) and the_set.is_spent(A)


def test_owned_by_and_the_journal() -> None:
    the_set = utxos()
    assert [position for position, _ in the_set.owned_by(ALICE.node_id)] == [A, C]
    the_set.begin()
    apply_transaction(
        the_set, decode_signed_tx(sign_tx(tx([A], [(BOB.node_id, 10)]), [ALICE])), 2000, 3
    )
    assert [position for position, _ in the_set.owned_by(BOB.node_id)] == [B, utxo_pos(2000, 3, 0)]
    the_set.rollback()
    assert [position for position, _ in the_set.owned_by(ALICE.node_id)] == [A, C]
    assert [position for position, _ in the_set.owned_by(BOB.node_id)] == [B]
    assert not the_set.is_spent(A) and len(the_set) == 3


def test_a_spend_replayed_before_its_deposit_is_known_keeps_the_deposit_spent() -> None:
    the_set = UtxoSet()
    spend = decode_signed_tx(sign_tx(tx([A], [(BOB.node_id, 10)]), [ALICE]))
    apply_transaction(the_set, spend, 1000, 0)  # the deposit at A is not known yet
    the_set.add(A, TxOutput(ALICE.node_id, 10))  # ... and arrives now
    assert A not in the_set and the_set.is_spent(A)
    assert the_set.get(utxo_pos(1000, 0, 0)) == TxOutput(BOB.node_id, 10)
