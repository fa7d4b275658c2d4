"""Plain-text and Markdown result tables (what the terminal and the README show)."""
from __future__ import annotations

import math
from typing import Mapping, Sequence


def _cell(v: object, digits: int) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.{digits}f}"
    return str(v)


def format_table(rows: Sequence[Mapping[str, object]], columns: Sequence[str] | None = None,
                 digits: int = 4, markdown: bool = False) -> str:
    """Rows of dicts as an aligned table; ``columns`` picks and orders them (default: all seen)."""
    if columns is None:
        columns = []
        for r in rows:
            columns += [c for c in r if c not in columns]
    cells = [[_cell(r.get(c, ""), digits) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[j]) for row in cells]) for j, c in enumerate(columns)]
    def line(vals):
        parts = [v.ljust(w) if j == 0 else v.rjust(w) for j, (v, w) in enumerate(zip(vals, widths))]
        return ("| " + " | ".join(parts) + " |") if markdown else "  ".join(parts)
    out = [line(list(columns))]
    out.append(("|" + "|".join("-" * (w + 2) for w in widths) + "|") if markdown else "  ".join("-" * w for w in widths))
    out += [line(r) for r in cells]
    return "\n".join(out)
