"""PNG pictures of the routing statistics (matplotlib, the `plot` extra; Agg backend, files only).

    expert_usage.png      layers x experts: the share of the work each expert gets
    class_routing.png     classes x experts for one layer: does the routing depend on the class?
    routing_entropy.png   routing entropy per layer over the epochs of a run (when logged)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def expert_usage(stats: list[dict], out: Path, title: str = "") -> Path:
    """A heatmap: one row per routed layer, one column per expert, colour = mean share of the work."""
    plt = _pyplot()
    n = max(s["experts"] for s in stats)
    grid = np.full((len(stats), n), np.nan)
    for row, s in enumerate(stats):
        grid[row, : s["experts"]] = s["usage"]
    fig, ax = plt.subplots(figsize=(max(5.0, 3.0 + 0.7 * n), 1.2 + 0.32 * len(stats)))
    im = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0, vmax=max(1.0 / n * 2, np.nanmax(grid)))
    ax.set_xticks(range(n), [str(i) for i in range(n)])
    ax.set_xlabel("expert")
    ax.set_yticks(range(len(stats)), [f"{s['name']} (H={s['entropy']:.2f})" for s in stats], fontsize=7)
    for (row, col), value in np.ndenumerate(grid):
        if np.isfinite(value):
            ax.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=6, color="w")
    fig.colorbar(im, ax=ax, label="share of the routing weight")
    ax.set_title(title or "expert usage per layer (uniform = 1/n)")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def class_routing(layer: dict, out: Path, class_names: list[str] | None = None) -> Path:
    """A heatmap for one layer: one column per class, one row per expert, colour = the class's usage of
    the expert minus the layer's mean usage (what is left once the average routing is taken out)."""
    plt = _pyplot()
    table = np.asarray(layer["per_class"], dtype=float)           # (classes, n)
    centred = (table - np.nanmean(table, axis=0, keepdims=True)).T
    n, classes = centred.shape
    fig, ax = plt.subplots(figsize=(max(6.0, 2.0 + 0.09 * classes), 1.6 + 0.35 * n))
    limit = np.nanmax(np.abs(centred)) or 1.0
    im = ax.imshow(centred, aspect="auto", cmap="coolwarm", vmin=-limit, vmax=limit, interpolation="nearest")
    ax.set_yticks(range(n), [str(i) for i in range(n)])
    ax.set_ylabel("expert")
    step = max(1, classes // 20)
    ax.set_xticks(range(0, classes, step), [str(c) for c in range(0, classes, step)], fontsize=7)
    ax.set_xlabel("class" + (f" (0 = {class_names[0]})" if class_names else ""))
    fig.colorbar(im, ax=ax, label="usage - mean usage", fraction=0.04)
    ax.set_title(f"{layer['name']}: how the routing differs by class (range ±{limit:.2g})")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def entropy_over_epochs(records: list[dict], out: Path) -> Path | None:
    """One line per layer: routing entropy (solid) and, where annealed, temperature (dashed, right axis)."""
    rows = [(r["epoch"], r["routing"]) for r in records if isinstance(r.get("routing"), dict)]
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    names = list(rows[-1][1])
    twin = None
    for name in names:
        points = [(e, layer[name]["entropy"]) for e, layer in rows if name in layer]
        ax.plot(*zip(*points), marker=".", label=name)
        temps = [(e, layer[name]["temperature"]) for e, layer in rows if "temperature" in layer.get(name, {})]
        if temps and len({t for _, t in temps}) > 1:
            twin = twin or ax.twinx()
            twin.plot(*zip(*temps), linestyle="--", alpha=0.6)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("routing entropy (1 = uniform over experts)")
    if twin is not None:
        twin.set_ylabel("temperature (dashed)")
    ax.legend(fontsize=6, ncol=2)
    ax.set_title("routing entropy over training")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
