"""What `bench multihop` reports from a payer's `debug_send_many` answer and /proc CPU times,
how much it deposits, and the progress line the benchmarks draw on a terminal."""

from __future__ import annotations

import io
from typing import Any

from p2pchan.core.payment.fees import default_fee_cap
from p2pchan_cli.bench_multihop import (
    MultihopBenchConfig,
    channel_deposit,
    phase_figures,
    ratio,
)
from p2pchan_cli.bench_network import cpu_spent
from p2pchan_cli.bench_progress import ProgressLine


def sent(count: int = 1000, succeeded: int = 1000, failed: int = 0) -> dict[str, Any]:
    return {
        "count": count,
        "succeeded": succeeded,
        "failed": failed,
        "pending": count - succeeded - failed,
        "seconds": 1.9,
        "p50_ms": 12.3456,
        "p99_ms": 45.678,
    }


def test_the_rate_counts_only_succeeded_payments_over_the_measured_seconds() -> None:
    figures = phase_figures(sent(1000, 900, 100), {"n0": 0.45, "n1": 0.9}, 2.0)
    assert (figures["payments"], figures["succeeded"], figures["failed"]) == (1000, 900, 100)
    assert figures["payments_per_s"] == 450
    assert (figures["p50_ms"], figures["p99_ms"]) == (12.35, 45.68)
    assert figures["cpu_us_per_payment"] == {"n0": 500, "n1": 1000}


def test_a_process_not_measured_and_a_run_with_nothing_succeeded_say_none() -> None:
    figures = phase_figures(sent(10, 0, 10), {"n0": None, "n1": 0.5}, 1.0)
    assert figures["payments_per_s"] == 0
    assert figures["cpu_us_per_payment"] == {"n0": None, "n1": None}
    assert figures["cpu_s"] == {"n0": None, "n1": 0.5}
    assert phase_figures(sent(), {}, 0.0)["payments_per_s"] is None


def test_the_ratio_needs_both_phases() -> None:
    multihop = phase_figures(sent(), {}, 2.0)
    direct = phase_figures(sent(), {}, 0.5)
    assert ratio(multihop, direct) == 0.25
    assert ratio(multihop, None) is None
    assert ratio(multihop, phase_figures(sent(10, 0, 10), {}, 1.0)) is None


def test_deposits_cover_every_payment_at_the_fee_cap_twice_with_the_direct_phase() -> None:
    config = MultihopBenchConfig(hops=3, payments=500, amount=1000)
    per_payment = 1000 + default_fee_cap(1000)
    assert channel_deposit(config) >= 2 * 500 * per_payment
    alone = MultihopBenchConfig(hops=3, payments=500, amount=1000, direct=False)
    assert per_payment * 500 <= channel_deposit(alone) < 2 * 500 * per_payment


def test_cpu_spent_between_snapshots_skips_what_was_not_measured() -> None:
    spent = cpu_spent({"a": 1.0, "b": None, "c": 2.0}, {"a": 1.5, "b": 3.0})
    assert spent == {"a": 0.5, "b": None, "c": None}


def test_the_progress_line_rewrites_itself_on_a_terminal_and_is_silent_otherwise() -> None:
    terminal = io.StringIO()
    line = ProgressLine(terminal, enabled=True)
    line.show("3/50 nodes ready")
    line.show("50/50 nodes ready")
    line.clear()
    text = terminal.getvalue()
    assert text.count("\r") == 3 and "\n" not in text
    assert "50/50 nodes ready" in text and text.endswith("\r\x1b[K")

    piped = io.StringIO()  # not a terminal: its isatty() is False
    quiet = ProgressLine(piped)
    quiet.show("anything")
    quiet.clear()
    assert not quiet.enabled and piped.getvalue() == ""
