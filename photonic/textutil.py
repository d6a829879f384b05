"""Small text helpers shared by every package: did-you-mean hints and markdown tables.

Pure string functions (no I/O), so the hub, the circuit and calibration layers and the
workloads all format their messages and reports the same way.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["did_you_mean", "markdown_table"]


def did_you_mean(value: object, choices: Iterable[object]) -> str:
    """``"; did you mean 'x'?"`` for the closest valid choice, ``""`` when nothing is close.

    Closeness is difflib's ratio (cutoff 0.5); failing that, a choice sharing the first three
    characters is offered, so that short typos of long names still get a hint.
    """
    names = [str(c) for c in choices]
    close = difflib.get_close_matches(str(value), names, n=1, cutoff=0.5)
    if not close:
        close = [c for c in names if c.startswith(str(value)[:3])][:1]
    return f"; did you mean {close[0]!r}?" if close else ""


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v).replace("|", "\\|").replace("\n", " ")


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """GitHub-flavoured markdown table lines; floats as ``%.6g``, ``|`` in cells escaped.

    Cells that are already strings are written as they are (pre-format numbers with units
    there). Every row must have one cell per header.
    """
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for i, row in enumerate(rows):
        row = list(row)
        if len(row) != len(headers):
            raise ValueError(f"markdown_table: row {i} has {len(row)} cells, "
                             f"expected {len(headers)} (headers {list(headers)})")
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return lines
