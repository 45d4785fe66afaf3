"""The command line itself, run in-process through `main()`: every usage error is one line on
stderr with exit 2, an amount is refused in the same words whatever the mistake and wherever it
is typed, and `--version` and `--help` say what a newcomer looks for. None of these reach a
node: they fail while the command line is read, so nothing can have changed."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click
import pytest

from p2pchan import __version__
from p2pchan_cli.main import cli, main
from p2pchan_cli.params import negatives_as_arguments

NODE = "b2" * 32
CHANNEL = "c3" * 32


def run_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["p2pchan", *args])
    # Logging stays as the tests have it: structlog caches loggers configured on first use.
    monkeypatch.setattr("p2pchan_cli.main.configure_logging", lambda *_args: None)
    code: int | str | None = 0
    try:
        main()
    except SystemExit as ended:
        code = ended.code
    out, err = capsys.readouterr()
    return (code if isinstance(code, int) else 0 if code is None else 1), out, err


def one_error_line(err: str) -> str:
    assert err.count("\n") == 1 and err.startswith("error: "), err
    return err[len("error: ") : -1]


@pytest.mark.parametrize("bad", ["-5", "0", "1.5", "18446744073709551616", "5x", "1e3", "+5"])
@pytest.mark.parametrize(
    ("command", "before", "what"),
    [
        ("open", [NODE], "AMOUNT"),
        ("send", [NODE], "AMOUNT"),
        ("invoice", [], "AMOUNT"),
        ("l1 faucet", [NODE], "AMOUNT"),
        ("deposit", [CHANNEL], "TOTAL"),
    ],
)
def test_every_bad_amount_gets_the_same_message_everywhere(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
    before: list[str],
    what: str,
    bad: str,
) -> None:
    args = [*command.split(), *before, bad]
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert (code, out) == (2, "")
    assert one_error_line(err) == (
        f"{what} must be a whole number from 1 to 18446744073709551615, got {bad} "
        f"(see `p2pchan {command} --help`)"
    )


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["open", NODE, "5", "--bogus"], "No such option '--bogus' (see `p2pchan open --help`)"),
        (["open", NODE], "Missing argument 'AMOUNT' (see `p2pchan open --help`)"),
        (["open", "zz", "5"], "NODE_ID must be 64 hex digits, got 'zz'"),
        (["open", f"{NODE}@nowhere", "5"], "the address after @ must be HOST:PORT"),
        (["send", NODE, "5", "--timeout", "-5"], "--timeout must be a number of seconds above 0"),
        (["send", NODE, "5", "--timeout", "nan"], "--timeout must be a number of seconds"),
        (["l1", "status", "--l1", "nonsense"], "--l1 must be HOST:PORT"),
        (["l1", "mine", "-3"], "N must be a whole number from 1 to 10000, got -3"),
        (["l1", "start", "--port", "-1"], "--port must be a whole number from 0 to 65535"),
        (["l1", "start"], "l1 start needs --datadir"),
        (["connect", NODE], "NODE_ID@HOST:PORT must be NODE_ID@HOST:PORT"),
        (["close", "abc"], "CHANNEL_ID must be 64 hex digits"),
        (["payments", "--hash", "xyz"], "--hash must be hex"),
        (["payments", "--status", "lost"], "'lost' is not one of"),
        (["payments", "--limit", "0"], "--limit must be a whole number from 1 to 10000, got 0"),
        (["payments", "--cursor", "5", "--index-offset", "2"], "give --index-offset or --cursor"),
        (["invoices", "--status", "succeeded"], "'succeeded' is not one of"),
        (["invoices", "--cursor", "-1"], "--cursor must be a whole number from 1 to"),
        (["node", "start", "--keep-payments", "0"], "--keep-payments must be a number of days"),
        (["open", NODE, "5", "--settle-timeout", "-100"], "--settle-timeout must be a whole"),
        (["pay-batch", "f.jsonl", "--concurrency", "0"], "--concurrency must be a whole number"),
        (["no-such-command"], "No such command 'no-such-command'"),
        (["localnet", "up", "--topology", "line3"], "Missing option '--dir'"),
        (["localnet", "pay", "--dir", "/nonexistent"], "give either --activity FILE or --random"),
        (
            ["localnet", "pay", "--dir", "/x", "--random", "--rate", "0"],
            "Invalid value for '--rate'",
        ),
        (["chaos", "--topology", "ring5"], "Missing option '--duration'"),
        (["chaos", "--topology", "ring5", "--duration", "2"], "--duration must be at least 5 s"),
        (
            ["chaos", "--topology", "ring5", "--duration", "60", "--faults", "kill,fire"],
            "unknown fault 'fire'",
        ),
        (["chaos", "--topology", "ring5", "--duration", "60", "--seed", "-1"], "--seed must be"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    reason: str,
) -> None:
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert (code, out) == (2, "")
    assert reason in one_error_line(err)


def test_a_command_without_a_node_fails_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = run_cli(monkeypatch, capsys, "--datadir", str(tmp_path), "channels")
    assert (code, out) == (1, "")
    assert (
        one_error_line(err) == f"no node is running in {tmp_path} (cannot connect to its rpc.sock)"
    )


def test_the_data_dir_defaults_to_the_environment_then_home(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("P2PCHAN_DATADIR", str(tmp_path))
    code, _out, err = run_cli(monkeypatch, capsys, "info")
    assert code == 1 and f"no node is running in {tmp_path} " in err
    monkeypatch.delenv("P2PCHAN_DATADIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    code, _out, err = run_cli(monkeypatch, capsys, "info")
    assert code == 1 and f"no node is running in {tmp_path}/.p2pchan " in err


def test_node_init_uses_the_default_data_dir(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("P2PCHAN_DATADIR", raising=False)
    code, out, _err = run_cli(monkeypatch, capsys, "node", "init")
    assert code == 0 and re.fullmatch(r"[0-9a-f]{64}\n", out)
    assert (tmp_path / ".p2pchan" / "node.key").exists()


def test_version_comes_from_the_installed_package(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _err = run_cli(monkeypatch, capsys, "--version")
    assert (code, out) == (0, f"p2pchan {__version__}\n")
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", __version__)


def test_help_lists_the_exit_codes_and_every_command_shows_an_example(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _err = run_cli(monkeypatch, capsys, "--help")
    assert code == 0
    flat = " ".join(out.split())
    assert "0 done; 1 failed" in flat and "2 usage error" in flat and "3 still pending" in flat
    code, out, _err = run_cli(monkeypatch, capsys, "send", "--help")
    assert "3 still pending" in " ".join(out.split())
    ctx = click.Context(cli)
    for name in cli.list_commands(ctx):
        command = cli.get_command(ctx, name)
        assert command is not None
        children = (
            [command.get_command(ctx, sub) for sub in command.list_commands(ctx)]
            if isinstance(command, click.Group)
            else [command]
        )
        for child in children:
            assert child is not None and "Example:" in (child.help or ""), (name, child)


def test_negative_numbers_are_arguments_and_options_keep_their_values() -> None:
    params = [
        click.Option(["--timeout"]),
        click.Option(["--force"], is_flag=True),
        click.Argument(["amount"]),
    ]
    assert negatives_as_arguments(params, ["x", "5"]) == ["x", "5"]  # nothing to move
    assert negatives_as_arguments(params, ["x", "-5", "--force", "--timeout", "-2"]) == [
        "--force",
        "--timeout",
        "-2",
        "--",
        "x",
        "-5",
    ]
    assert negatives_as_arguments(params, ["-5", "--", "-x"]) == ["--", "-5", "-x"]
