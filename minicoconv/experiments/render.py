"""The table as Markdown (Table 1's layout, then one detail row per cell) or CSV (one row per cell)."""

from __future__ import annotations

import csv
import io

from .table import CellSummary

CONV_NAMES = {"static": "static", "condconv": "CondConv", "dycnn": "DY-CNN", "coconv": "CoConv",
              "odconv": "ODConv", "dgc": "DGC"}
MODEL_NAMES = {"alexnet": "AlexNet", "resnet18": "ResNet18", "mobilenetv2": "MobileNetV2"}
CSV_COLUMNS = ("model", "conv", "runs", "incomplete", "top1_mean", "top1_std", "paper_top1", "chosen_epochs",
               "chosen_by", "params", "macs_train", "macs_fused", "synthetic")


def markdown(cells: list[CellSummary], ablations: list[str], synthetic: bool,
             recipe_differences: dict[str, list]) -> str:
    """Table 1 (conv types x backbones, paper figure beside each cell), details, incomplete runs."""
    models = [m for m in MODEL_NAMES if any(c.key["model"] == m for c in cells)]
    models += sorted({c.key["model"] for c in cells} - set(models))
    lines = ["Top-1 (%) on the test set at the epoch chosen by the validation split (the last epoch without one),",
             "mean ± sample std over seeds (n complete runs); paper: the CoConv paper's figure for the same cell.", ""]
    if synthetic:
        lines[:0] = ["**SYNTHETIC data: these numbers say nothing about CIFAR-100 or the paper.**", ""]
    header = ["conv", *ablations]
    for m in models:
        header += [MODEL_NAMES.get(m, m), "paper"]
    rows = []
    for row_key in _unique([(c.key["conv"], *(c.key[a] for a in ablations)) for c in cells]):
        row = [CONV_NAMES.get(row_key[0], row_key[0]), *(_value(v) for v in row_key[1:])]
        for m in models:
            cell = next((c for c in cells if c.key["model"] == m and
                         (c.key["conv"], *(c.key[a] for a in ablations)) == row_key), None)
            row += [_top1(cell) if cell else "", _num(cell.paper) if cell else ""]
        rows.append(row)
    lines += _md_table(header, rows)
    detail_header = ["backbone", "conv", *ablations, "runs", "top-1", "paper", "Δ paper", "chosen epochs",
                     "chosen by", "params", "MACs train", "MACs fused"]
    detail = []
    for c in cells:
        delta = f"{c.mean - c.paper:+.2f}" if c.mean is not None and c.paper is not None else "—"
        detail.append([MODEL_NAMES.get(c.key["model"], c.key["model"]), CONV_NAMES.get(c.key["conv"], c.key["conv"]),
                       *(_value(c.key[a]) for a in ablations), _runs(c), _top1(c, with_n=False), _num(c.paper),
                       delta, _epochs(c), c.selection if c.complete else "—", _millions(c.params),
                       _millions(c.macs_train), _millions(c.macs_fused)])
    lines += ["", *_md_table(detail_header, detail)]
    incomplete = [r for c in cells for r in c.incomplete]
    if incomplete:
        lines += ["", "Incomplete runs (not in the means; `minicoconv grid` with the same options resumes them):"]
        lines += [f"- {r.path}: {r.epochs_done}/{r.config.epochs} epochs" for r in incomplete]
    if recipe_differences:
        lines += ["", "**Warning: the runs differ in their recipe**, so the cells may not be comparable: "
                  + "; ".join(f"{k} {', '.join(v)}" for k, v in recipe_differences.items())]
    return "\n".join(lines) + "\n"


def csv_text(cells: list[CellSummary], ablations: list[str], synthetic: bool) -> str:
    """One row per cell; numbers unformatted (empty where there is none)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*CSV_COLUMNS[:2], *ablations, *CSV_COLUMNS[2:]])
    for c in cells:
        writer.writerow([c.key["model"], c.key["conv"], *(c.key[a] for a in ablations), len(c.complete),
                         len(c.incomplete), _raw(c.mean), _raw(c.std), _raw(c.paper),
                         " ".join(map(str, c.chosen_epochs)), c.selection if c.complete else "", _raw(c.params),
                         _raw(c.macs_train), _raw(c.macs_fused), synthetic])
    return out.getvalue()


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(row) + " |" for row in rows)]


def _unique(items: list) -> list:
    return list(dict.fromkeys(items))


def _top1(cell: CellSummary, with_n: bool = True) -> str:
    text = "—" if cell.mean is None else f"{cell.mean:.2f}" + ("" if cell.std is None else f" ± {cell.std:.2f}")
    if with_n and cell.mean is not None:
        text += f" (n={len(cell.top1)})"
    if with_n and cell.incomplete:
        text += f" +{len(cell.incomplete)} incomplete"
    return text


def _runs(cell: CellSummary) -> str:
    return str(len(cell.complete)) + (f" (+{len(cell.incomplete)} incomplete)" if cell.incomplete else "")


def _epochs(cell: CellSummary) -> str:
    epochs = cell.chosen_epochs
    if not epochs:
        return "—"
    if len(set(epochs)) == 1:
        return str(epochs[0])
    return ", ".join(map(str, epochs)) if len(epochs) <= 5 else f"{min(epochs)}–{max(epochs)}"


def _value(v) -> str:
    return "—" if v is None else str(v)


def _num(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}"


def _millions(v: int | None) -> str:
    return "—" if v is None else f"{v / 1e6:.2f}M"


def _raw(v) -> str:
    return "" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))
