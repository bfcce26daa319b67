"""Small helpers for plain-text tables and local times."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import click

MAX_LAST = 100_000  # --last N: more rows than anyone reads, within every database's LIMIT


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], width: int | None = None) -> str:
    """Aligned columns; with ``width``, the last column is cut (``…``) to fit it."""
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    if width is not None:
        room = max(width - sum(widths[:-1]) - 2 * (len(headers) - 1), 10)
        for row in cells:
            if len(row[-1]) > room:
                row[-1] = row[-1][: room - 1] + "…"
        widths[-1] = min(widths[-1], room)
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines)


def local_time(moment: datetime | None, timezone: str) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M:%S %Z")


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))
