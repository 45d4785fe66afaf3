"""How values read in a terminal: short ids, amounts, times, routes, key/value lines and
tables that fit the terminal's width.

Pure: every function takes the JSON documents the node returns (the width, and `now_ms` where a
time is shown relative to now) and returns text; nothing here prints. `--json` never comes
through here, so the JSON contract is untouched by anything shown to a person.

A person reads ids by their ends, so a wide id in a table keeps both (`8218798c…e9af20`); a
key/value view shows ids whole, to be copied. Nothing is ever shown as Python data: no `None`
(`-`), no `True` (`yes`), no list or dict repr.

Tables are drawn here rather than by rich because rich shrinks every column to fit, cutting
numbers and ids at the end (`1234567…`); here a column is never cut. Instead the columns least
needed are left out, in the order their `drop` rank says, until the rest fit, and one flexible
column (a reason, a description) wraps in the room left. No line carries trailing spaces.
"""

from __future__ import annotations

import datetime
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.cells import cell_len

ELLIPSIS = "…"
ID_HEAD = 8  # as `p2pchan.types.short_hex` shortens ids in the node's messages
ID_TAIL = 6
GAP = "  "
FLEXIBLE_MIN_WIDTH = 30


def short_id(hex_id: Any, head: int = ID_HEAD, tail: int = ID_TAIL) -> str:
    """`8218798c…e9af20`: both ends of a wide id; short ones and non-ids as they are."""
    if not isinstance(hex_id, str) or not hex_id:
        return text_of(hex_id)
    if len(hex_id) <= head + tail + 1:
        return hex_id
    return f"{hex_id[:head]}{ELLIPSIS}{hex_id[-tail:]}"


def text_of(value: Any) -> str:
    """Any JSON value as a person reads it: `-` for null, `yes`/`no`, lists joined by commas."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ", ".join(text_of(item) for item in value) or "-"
    if isinstance(value, dict):
        return ", ".join(f"{key} {text_of(item)}" for key, item in value.items()) or "-"
    return " ".join(str(value).split())  # one line, whatever it holds


def milliseconds(value: Any) -> str:
    return "-" if value is None else f"{text_of(value)} ms"


def route_text(route: Any) -> str:
    """A route as its hops: `8384c9a4…1c93f3 → 5a6b7c8d…0e0f10` (the first hop is our peer)."""
    if not isinstance(route, list) or not route:
        return "-"
    return " → ".join(
        short_id(hop.get("node_id")) if isinstance(hop, dict) else text_of(hop) for hop in route
    )


def utc_time(ms: Any) -> str:
    """A timestamp in milliseconds as `2026-11-30 11:40 UTC`."""
    if not isinstance(ms, int) or isinstance(ms, bool):
        return "-"
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def relative_time(ms: int, now_ms: int) -> str:
    """`in 59 min`, `3 h ago`: the distance from now in its largest whole unit."""
    seconds = (ms - now_ms) // 1000
    distance = abs(seconds)
    for size, unit in ((86_400, "d"), (3_600, "h"), (60, "min")):
        if distance >= size:
            amount = f"{distance // size} {unit}"
            break
    else:
        amount = f"{distance} s"
    return f"in {amount}" if seconds >= 0 else f"{amount} ago"


def key_values(rows: Iterable[tuple[str, str]]) -> str:
    """Aligned `label  value` lines; a long value runs on (the terminal wraps it whole)."""
    rows = list(rows)
    width = max((cell_len(label) for label, _ in rows), default=0)
    return "\n".join(
        f"{label}{' ' * (width - cell_len(label))}  {value}".rstrip() for label, value in rows
    )


def plain_view(document: Any) -> str:
    """Any document without a view of its own: an object as `key  value` lines, a list one
    item per line, anything else as text."""
    if isinstance(document, dict):
        return key_values(
            (key.replace("_", " "), text_of(value)) for key, value in document.items()
        )
    if isinstance(document, list):
        return "\n".join(text_of(item) for item in document)
    return text_of(document)


def document_rows(document: Mapping[str, Any], labels: Mapping[str, str]) -> list[tuple[str, str]]:
    """The fields of a document in `labels`' order, under their labels; absent ones skipped."""
    return [(label, text_of(document[key])) for key, label in labels.items() if key in document]


@dataclass(frozen=True)
class Column:
    header: str
    numeric: bool = False  # right-aligned
    flexible: bool = False  # wraps in the room the others leave (at most one per table)
    drop: int = 0  # 0: always shown; else left out when too wide, highest rank first


def render_table(columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int) -> str:
    """Columns never cut: the droppable ones go first, then the flexible one wraps."""
    shown = list(range(len(columns)))
    widths = [
        max([cell_len(columns[i].header)] + [cell_len(row[i]) for row in rows])
        for i in range(len(columns))
    ]

    def needed(indices: list[int]) -> int:
        total = sum(
            min(widths[i], FLEXIBLE_MIN_WIDTH) if columns[i].flexible else widths[i]
            for i in indices
        )
        return total + len(GAP) * (len(indices) - 1)

    droppable = sorted((i for i, c in enumerate(columns) if c.drop), key=lambda i: -columns[i].drop)
    while needed(shown) > width and droppable:
        shown.remove(droppable.pop(0))
    flexible = [i for i in shown if columns[i].flexible]
    if flexible:
        room = width - needed([i for i in shown if not columns[i].flexible]) - len(GAP)
        natural = widths[flexible[0]]
        widths[flexible[0]] = min(natural, max(room, FLEXIBLE_MIN_WIDTH))

    def line(cells: Sequence[str]) -> list[str]:
        wrapped = [
            textwrap.wrap(cells[i], widths[i]) or [""] if columns[i].flexible else [cells[i]]
            for i in shown
        ]
        height = max(len(parts) for parts in wrapped)
        out = []
        for n in range(height):
            parts = []
            for parts_of, i in zip(wrapped, shown, strict=True):
                cell = parts_of[n] if n < len(parts_of) else ""
                pad = " " * (widths[i] - cell_len(cell))
                parts.append(pad + cell if columns[i].numeric else cell + pad)
            out.append(GAP.join(parts).rstrip())
        return out

    header = line([c.header for c in columns])
    rule = "─" * (sum(widths[i] for i in shown) + len(GAP) * (len(shown) - 1))
    body = [text for row in rows for text in line(row)]
    return "\n".join([*header, rule, *body])
