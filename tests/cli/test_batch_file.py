"""A pay-batch file is checked whole before anything is paid: each bad line is named with its
number and what is wrong with it (types, amounts, invoice format, an invoice twice), a file that
is not UTF-8 gets one line, and none of it needs a node (the real batch runs are in
tests/system/test_pay_batch.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from rich.console import Console

from p2pchan.core.invoice import Invoice, encode_invoice
from p2pchan.crypto.keys import Identity
from p2pchan.errors import UserError
from p2pchan.types import ChainId, SecretHash
from p2pchan_cli.main import main
from p2pchan_cli.pay_batch import (
    BadBatch,
    BatchLine,
    progress_bar,
    read_batch,
    refuse_payments_to,
)

BOB = Identity(b"b" * 32)
TO = BOB.node_id.hex()


def an_invoice(amount: int = 70) -> str:
    invoice = Invoice(
        ChainId(bytes(32)), BOB.node_id, amount, SecretHash(bytes(32)), 0, 3600, 11, "tea", b""
    )
    return encode_invoice(BOB, invoice)


def write_lines(tmp_path: Path, lines: list[object]) -> Path:
    path = tmp_path / "batch.jsonl"
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    path.write_text(text)
    return path


def test_good_lines_become_payments(tmp_path: Path) -> None:
    invoice = an_invoice()
    path = write_lines(tmp_path, [{"to": TO.upper(), "amount": 5}, "", {"invoice": invoice}])
    assert read_batch(path) == [
        BatchLine(1, TO, ("send", {"node_id": TO, "amount": 5})),
        BatchLine(3, TO, ("pay", {"invoice": invoice})),
    ]


def test_payments_to_the_node_itself_are_named(tmp_path: Path) -> None:
    path = write_lines(tmp_path, [{"to": "ab" * 32, "amount": 5}, {"invoice": an_invoice()}])
    lines = read_batch(path)
    refuse_payments_to("ab" * 32 + "x", path, lines)  # none of ours
    with pytest.raises(BadBatch) as bad:
        refuse_payments_to(TO, path, lines)
    assert bad.value.errors == [f"{path}:2: that is this node's own id"]


def test_every_bad_line_is_named_with_what_is_wrong(tmp_path: Path) -> None:
    invoice = an_invoice()
    rule = "amount must be a whole number from 1 to 18446744073709551615, got"
    lines: list[object] = [
        {"to": TO, "amount": 5},  # 1: fine
        {"to": TO, "amount": 0},
        {"to": TO, "amount": "10"},
        {"to": TO, "amount": 1.5},
        {"to": TO, "amount": -5},
        {"to": TO, "amount": 2**64},
        {"to": TO, "amount": True},
        {"to": "zz", "amount": 5},
        {"invoice": "garbage"},
        {"invoice": "p2pc1qqqq"},
        {"invoice": 7},
        "not json",
        [TO, 5],
        {"to": TO, "amount": 5, "memo": "x"},
        {"invoice": invoice},  # 15: fine
        {"invoice": invoice},
    ]
    with pytest.raises(BadBatch) as bad:
        read_batch(write_lines(tmp_path, lines))
    where = str(tmp_path / "batch.jsonl")
    assert bad.value.errors == [
        f"{where}:2: {rule} 0",
        f'{where}:3: {rule} "10"',
        f"{where}:4: {rule} 1.5",
        f"{where}:5: {rule} -5",
        f"{where}:6: {rule} 18446744073709551616",
        f"{where}:7: {rule} true",
        f'{where}:8: to must be a node id of 64 hex digits, got "zz"',
        f"{where}:9: not an invoice: an invoice starts with 'p2pc1'",
        f"{where}:10: malformed invoice: its contents do not decode (cut short or mistyped?)",
        f"{where}:11: invoice must be a string",
        f"{where}:12: not a JSON object (not valid JSON)",
        f"{where}:13: not a JSON object (a list)",
        f'{where}:14: expected the keys {{"to", "amount"}} or {{"invoice"}}, got amount, memo, to',
        f"{where}:16: the same invoice as line 15",
    ]


def test_a_file_that_is_not_utf8_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "batch.jsonl"
    path.write_bytes(json.dumps({"to": TO, "amount": 5}).encode() + b"\n\xff\xfe{}\n")
    with pytest.raises(UserError, match=r"batch.jsonl:2: not UTF-8 text \(byte 0xff\)"):
        read_batch(path)


def test_an_empty_or_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="holds no payments"):
        read_batch(write_lines(tmp_path, ["", "  "]))
    with pytest.raises(UserError, match=r"cannot read .*: No such file or directory"):
        read_batch(tmp_path / "missing.jsonl")


def test_the_command_prints_each_bad_line_and_pays_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_lines(tmp_path, [{"to": TO, "amount": 0}, {"to": TO, "amount": 5}, "[]"])
    argv = ["p2pchan", "--datadir", str(tmp_path / "no-node"), "pay-batch", str(path)]
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.setattr("p2pchan_cli.main.configure_logging", lambda *_args: None)
    with pytest.raises(SystemExit) as ended:
        main()
    out, err = capsys.readouterr()
    assert (ended.value.code, out) == (1, "")
    lines = err.splitlines()
    assert len(lines) == 2 and all(line.startswith("error: ") for line in lines)
    assert "batch.jsonl:1: amount must be" in lines[0]
    assert lines[1].endswith("batch.jsonl:3: not a JSON object (a list); nothing was paid")


def test_the_progress_bar_counts_successes_and_failures() -> None:
    console = Console(width=100, record=True, force_terminal=True, color_system=None)
    with progress_bar(True, console) as progress:
        task = progress.add_task("paying", total=40, succeeded=0, failed=0)
        progress.update(task, advance=31, succeeded=29, failed=2)
        progress.refresh()
        shown = console.export_text()
    assert "31/40" in shown and "29 succeeded" in shown and "2 failed" in shown
