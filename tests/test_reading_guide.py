"""docs/reading-guide.md: every row's line count is recomputed from the source, so the guide
cannot go stale (a definition that moved or grew names its row)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROW = re.compile(r"^\| (\d+) \| `([^`]+)` \| (.+) \| (\d+) \|$")


def _lines(tree: ast.Module, qualname: str) -> int:
    """Lines of one definition: from its first decorator (or def/class line) to its last line."""
    node = tree
    for part in qualname.split("."):
        node = next((n for n in ast.iter_child_nodes(node)
                     if isinstance(n, ast.FunctionDef | ast.ClassDef) and n.name == part), None)
        assert node is not None, f"{qualname}: no such definition"
    start = min([node.lineno] + [d.lineno for d in node.decorator_list])
    return node.end_lineno - start + 1


def _rows() -> list[tuple[int, str, list[str], int]]:
    text = (ROOT / "docs" / "reading-guide.md").read_text()
    rows = [ROW.match(line) for line in text.splitlines()]
    return [(int(m[1]), m[2], re.findall(r"`([^`]+)`", m[3]), int(m[4])) for m in rows if m]


def test_every_count_in_the_reading_guide_is_the_source_count():
    rows = _rows()
    assert [r[0] for r in rows] == list(range(1, len(rows) + 1)) and rows
    for number, path, names, count in rows:
        tree = ast.parse((ROOT / path).read_text())
        actual = sum(_lines(tree, name) for name in names)
        assert actual == count, f"row {number} ({path}): the guide says {count} lines, the source has {actual}"


def test_the_totals_line_adds_up():
    rows = _rows()
    text = (ROOT / "docs" / "reading-guide.md").read_text()
    assert f"Total: {len(rows)} files, {sum(r[3] for r in rows)} lines." in text
