"""What the tutorials share: section headings, checked claims, and pictures drawn without pyplot.

A tutorial prints its lesson in numbered sections, states each fact it teaches as a `check`
(a failed one stops the lesson loudly instead of teaching something false), and, when given
`--plots DIR`, saves its pictures there.
"""

from __future__ import annotations

from pathlib import Path


def section(number: int, title: str) -> None:
    """Print a numbered section heading."""
    print(f"\n{'=' * 72}\n{number}. {title}\n{'=' * 72}")


def check(condition: bool, what: str) -> None:
    """Print a check mark for a fact the lesson claims; stop loudly if it is not true."""
    if not condition:
        raise SystemExit(f"CHECK FAILED: {what}")
    print(f"  [ok] {what}")


def new_figure(width: float, height: float):
    """A matplotlib Figure of width x height inches.

    matplotlib.figure.Figure draws without pyplot: no GUI backend is chosen or changed, so
    this works the same in a terminal, under the tests and inside a notebook.
    """
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def save_figure(fig, plots: Path | None, name: str) -> None:
    """Write a matplotlib Figure to plots/name (nothing when no --plots folder was given)."""
    if plots is None:
        return
    plots.mkdir(parents=True, exist_ok=True)
    fig.savefig(plots / name, dpi=90, bbox_inches="tight")
    print(f"  picture: {plots / name}")
