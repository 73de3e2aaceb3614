"""Aligned plain-text tables of benchmark rows (lists of dicts)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    key: str              # the row's key
    header: str
    fmt: str = "{}"       # format of a present value; a missing one (None or absent) prints "-"

    def cell(self, row: dict) -> str:
        value = row.get(self.key)
        if value is None:
            return "-"
        if isinstance(value, bool):
            return "yes" if value else "NO"
        return self.fmt.format(value)


def format_table(rows: list[dict], columns: list[Column]) -> str:
    """Text columns left-aligned, numeric ones right-aligned, two spaces apart."""
    cells = [[c.cell(r) for c in columns] for r in rows]
    numeric = [all(isinstance(r.get(c.key), int | float) or r.get(c.key) is None for r in rows) for c in columns]
    widths = [max([len(c.header)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]

    def line(values):
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()

    out = [line([c.header for c in columns]), line(["-" * w for w in widths])]
    out += [line(row) for row in cells]
    return "\n".join(out)
