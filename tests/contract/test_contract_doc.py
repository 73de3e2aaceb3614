"""docs/backend-contract.md lists exactly the primitives of backend/primitives.py, with the same notes."""

from __future__ import annotations

import re
from pathlib import Path

from minicoconv.backend.primitives import PRIMITIVES, USES_GENERIC_FORM

DOC = Path(__file__).resolve().parents[2] / "docs" / "backend-contract.md"


def test_the_contract_page_lists_every_primitive_with_its_note():
    rows = dict(re.findall(r"^\| `([a-z0-9_]+)` \| (.+) \|$", DOC.read_text(), flags=re.M))
    assert list(rows) == list(PRIMITIVES), "docs/backend-contract.md is out of date: regenerate its table"
    for name, note in PRIMITIVES.items():
        assert rows[name] == note.replace("|", "/"), name


def test_the_contract_page_names_every_generic_form_taken():
    text = DOC.read_text()
    for backend, names in USES_GENERIC_FORM.items():
        line = next(line for line in text.splitlines() if line.startswith(f"- `{backend}`: "))
        assert set(re.findall(r"`([a-z0-9_]+)`", line.split(": ", 1)[1])) == set(names), backend
