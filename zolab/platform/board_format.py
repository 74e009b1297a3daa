"""A :class:`~zolab.platform.leaderboard.Board` as text: cells, notes, markdown, LaTeX and CSV.

One formatting for every reader (``zolab leaderboard``, its ``--format`` exports, the dashboard):

* accuracy and macro-F1 in percent, one ``mean ± CI`` cell (``78.5 ± 2.3``; ``78.5 (1 seed)``);
* the difference from the baseline as ``+6.0 pts [-1.2, +13.2]``, ``*`` when the 95% paired
  interval excludes 0, ``†`` when it is still significant after Holm's correction; with fewer than
  2 paired seeds the cell says so instead of a number;
* memory in KiB/MiB/GiB, hours to 3 significant digits, seconds to 0.1 s;
* CSV: the same numbers rounded as shown (no 17-digit floats), one column per figure, units in
  the header, every task in one file.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from zolab.platform.leaderboard import METRICS, Board, BoardRow, MetricSpec, TaskBoard
from zolab.platform.stats import MeanCI, PairedDiff

EXCLUDES_ZERO, HOLM = "*", "†"
FORMATS = ("table", "markdown", "latex", "csv")


# -- numbers ------------------------------------------------------------------------------------
def _byte_unit(x: float) -> tuple[str, float]:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20)):
        if abs(x) >= size:
            return unit, size
    return "KiB", 2**10


def _num(spec: MetricSpec, x: float, *, signed: bool = False) -> str:
    """One value in the metric's display unit (no unit suffix except for bytes)."""
    sign = "+" if signed else ""
    if spec.unit == "%":
        return f"{x * spec.scale:{sign}.1f}"
    if spec.unit == "s":
        return f"{x:{sign}.1f}"
    if spec.unit == "steps":
        return f"{x:{sign}.0f}"
    return f"{x:{sign}.3g}"


def mean_ci_text(spec: MetricSpec, s: MeanCI, *, latex: bool = False) -> str:
    """``78.5 ± 2.3`` (percent), ``1.23 ± 0.01 GiB``; ``78.5 (1 seed)``; ``-`` with no value."""
    if s.mean is None:
        return "-"
    pm = r" $\pm$ " if latex else " ± "
    if spec.unit == "bytes":
        unit, size = _byte_unit(s.mean)
        body = f"{s.mean / size:.2f}" if unit == "GiB" else f"{s.mean / size:.1f}"
        if s.half is not None:
            body += pm + (f"{s.half / size:.2f}" if unit == "GiB" else f"{s.half / size:.1f}")
        text = f"{body} {unit}"
    else:
        text = _num(spec, s.mean)
        if s.half is not None:
            text += pm + _num(spec, s.half)
    return text if s.half is not None else f"{text} ({s.n} seed{'s' if s.n != 1 else ''})"


def markers(d: PairedDiff, alpha: float) -> str:
    return (EXCLUDES_ZERO if d.excludes_zero else "") + (HOLM if d.significant_holm(alpha) else "")


def delta_text(spec: MetricSpec, d: PairedDiff | None, alpha: float, *, latex: bool = False) -> str:
    """``+6.0 pts [-1.2, +13.2] *†``; ``1 paired seed: no interval``; ``no paired seeds``."""
    if d is None:
        return ""
    if not d.has_interval:
        if d.mean is None:
            return d.reason or "no paired seeds"
        return f"{_num(spec, d.mean, signed=True)}{' pts' if spec.unit == '%' else ''} ({d.reason})"
    unit = " pts" if spec.unit == "%" else ""
    lo, hi = _num(spec, d.low, signed=True), _num(spec, d.high, signed=True)  # type: ignore[arg-type]
    mid = _num(spec, d.mean, signed=True)  # type: ignore[arg-type]
    mark = markers(d, alpha)
    if latex:
        sup = {"*": "*", "†": r"\dagger"}
        mark = f"$^{{{''.join(sup[c] for c in mark)}}}$" if mark else ""
        return f"${mid}$ [${lo}$, ${hi}$]{mark}"
    return f"{mid}{unit} [{lo}, {hi}]" + (f" {mark}" if mark else "")


def label_text(row: BoardRow) -> str:
    text = row.label + (" (baseline)" if row.is_baseline and "baseline" not in row.label.lower() else "")
    if row.diverged:
        text += f" [diverged {row.diverged_seeds}/{row.n_seeds}]"
    return text


# -- one task as a grid of strings ---------------------------------------------------------------
@dataclass(frozen=True)
class TextTable:
    title: str
    headers: list[str]
    rows: list[list[str]]
    notes: list[str]
    numeric: list[bool]          # per column: right-align


def _header(spec: MetricSpec) -> str:
    if spec.unit == "%":
        return f"{spec.label} (%)"
    if spec.unit in ("h", "s"):
        return f"{spec.label} ({spec.unit})"
    return spec.label


def task_table(board: Board, tb: TaskBoard, *, latex: bool = False) -> TextTable:
    """Headers, rows of cell strings and the notes of one task."""
    headers, numeric = ["variant", "seeds"], [False, True]
    for spec in tb.columns:
        headers.append(_header(spec))
        numeric.append(True)
        if spec.paired:
            headers.append(f"Δ {spec.label} vs baseline")
            numeric.append(True)
    rows = []
    for r in tb.rows:
        cells = [label_text(r), str(r.n_seeds)]
        for spec in tb.columns:
            cell = r.cells[spec.key]
            cells.append(mean_ci_text(spec, cell.summary, latex=latex))
            if spec.paired:
                cells.append("-" if r.is_baseline else delta_text(spec, cell.delta, board.alpha, latex=latex))
        rows.append(cells)
    title = f"plan {board.plan_id} ({board.plan_name}), task {tb.task}"
    return TextTable(title, headers, rows, task_notes(board, tb), numeric)


def task_notes(board: Board, tb: TaskBoard) -> list[str]:
    """The sentences a reader needs to read the table right."""
    conf = f"{board.confidence:.0%}"
    notes = [f"mean ± {conf} CI over seeds (Student t); accuracy and macro-F1 in %."]
    paired = [s for s in tb.columns if s.paired]
    if tb.baseline is not None and paired:
        fam = ", ".join(f"m={tb.family_size.get(s.key, 0)} for {s.label}" for s in paired)
        notes.append(
            f"Δ: variant minus the baseline '{tb.baseline}' seed by seed (the same seed draws the same data "
            f"sample and test set), in percentage points, with the {conf} paired t-interval; "
            f"{EXCLUDES_ZERO} the interval excludes 0; {HOLM} still significant at α={board.alpha:g} after "
            f"Holm's correction over the comparisons with the baseline on this task ({fam}; family: per task, "
            "per metric). Fewer than 2 paired seeds: no interval.")
    elif tb.baseline is None:
        notes.append("no baseline result on this task: no differences computed.")
    if any(r.diverged for r in tb.rows):
        notes.append("diverged k/n: k of the n seeds diverged (train loss blew up); ranked last, "
                     "and its mean includes the diverged seeds.")
    notes.append(f"order: baseline, then by mean {METRICS[tb.rank_metric].label} (best first), diverged last.")
    if tb.dropped:
        notes.append("not shown: " + "; ".join(f"{d.label} ({d.reason})" for d in tb.dropped) + ".")
    return notes


# -- renderers -----------------------------------------------------------------------------------
def _md_escape(text: str) -> str:
    return text.replace("|", r"\|")


def to_markdown(board: Board) -> str:
    out: list[str] = []
    for tb in board.tasks:
        t = task_table(board, tb)
        out.append(f"### {_md_escape(t.title)}\n")
        out.append("| " + " | ".join(_md_escape(h) for h in t.headers) + " |")
        out.append("|" + "|".join("---:" if n else ":---" for n in t.numeric) + "|")
        for row in t.rows:
            out.append("| " + " | ".join(_md_escape(c) for c in row) + " |")
        out.append("")
        out.extend(_md_escape(n) for n in t.notes)
        out.append("")
    return "\n".join(out).rstrip() + "\n"


_LATEX_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                  "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}",
                  "±": r"$\pm$", "Δ": r"$\Delta$", "α": r"$\alpha$", "†": r"$^\dagger$"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def to_latex(board: Board) -> str:
    """One booktabs ``table`` per task (needs ``\\usepackage{booktabs}``)."""
    out: list[str] = []
    for tb in board.tasks:
        t = task_table(board, tb, latex=True)
        spec = "".join("r" if n else "l" for n in t.numeric)
        out += [r"\begin{table}[t]", r"\centering", r"\small",
                rf"\caption{{{latex_escape(t.title)}}}", rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
                " & ".join(latex_escape(h) for h in t.headers) + r" \\", r"\midrule"]
        for row in t.rows:  # number cells are already LaTeX; the label is text
            out.append(" & ".join([latex_escape(row[0]), *row[1:]]) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}",
                r"\par\smallskip{\footnotesize " + " ".join(latex_escape(n) for n in t.notes) + "}",
                r"\end{table}", ""]
    return "\n".join(out)


# -- flat records (CSV, data frames) -------------------------------------------------------------
def _round(spec: MetricSpec, x: float | None, *, kind: str = "value") -> float | None:
    """A number rounded as it is shown, in the column's display unit (MiB for bytes); p-values to
    4 significant digits."""
    if x is None or not math.isfinite(x):
        return None
    if kind == "p":
        return float(f"{x:.4g}")
    if spec.unit == "%":
        return round(x * spec.scale, 1)
    if spec.unit == "bytes":
        return round(x / 2**20, 1)
    if spec.unit == "s":
        return round(x, 1)
    if spec.unit == "steps":
        return round(x, 0)
    return float(f"{x:.4g}")


def _col(spec: MetricSpec, what: str = "") -> str:
    unit = {"%": "%", "bytes": "MiB", "h": "h", "s": "s", "steps": "steps"}.get(spec.unit, "")
    base = f"{spec.label} ({unit})" if unit else spec.label
    return f"{base} {what}".rstrip()


def records(board: Board) -> list[dict[str, Any]]:
    """One flat dict per task x variant, numbers rounded as shown, units in the keys."""
    out: list[dict[str, Any]] = []
    for tb in board.tasks:
        for rank, r in enumerate(tb.rows):
            rec: dict[str, Any] = {"task": tb.task, "rank": rank, "variant": r.label, "baseline": r.is_baseline,
                                   "seeds": r.n_seeds, "diverged seeds": r.diverged_seeds}
            for spec in tb.columns:
                cell = r.cells[spec.key]
                rec[_col(spec, "mean")] = _round(spec, cell.summary.mean)
                rec[_col(spec, f"± {board.confidence:.0%} CI")] = _round(spec, cell.summary.half)
                if spec.paired and not r.is_baseline and cell.delta is not None:
                    d = cell.delta
                    pts = "pts" if spec.unit == "%" else ""
                    rec[f"Δ {spec.label} ({pts})".replace(" ()", "")] = _round(spec, d.mean)
                    rec[f"Δ {spec.label} low"] = _round(spec, d.low)
                    rec[f"Δ {spec.label} high"] = _round(spec, d.high)
                    rec[f"Δ {spec.label} paired seeds"] = d.n
                    rec[f"Δ {spec.label} p"] = _round(spec, d.p, kind="p")
                    rec[f"Δ {spec.label} p (Holm)"] = _round(spec, d.p_holm, kind="p")
                    rec[f"Δ {spec.label} excludes 0"] = d.excludes_zero
            out.append(rec)
    return out


def to_csv(board: Board) -> str:
    rows = records(board)
    fields: list[str] = []
    for rec in rows:
        fields += [k for k in rec if k not in fields]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for rec in rows:
        writer.writerow({k: "" if v is None else v for k, v in rec.items()})
    return buf.getvalue()


def render(board: Board, fmt: str) -> str:
    """``markdown`` | ``latex`` | ``csv`` (``table`` is the CLI's rich rendering of :func:`task_table`)."""
    if fmt == "markdown":
        return to_markdown(board)
    if fmt == "latex":
        return to_latex(board)
    if fmt == "csv":
        return to_csv(board)
    raise ValueError(f"unknown format {fmt!r}: one of {', '.join(f for f in FORMATS if f != 'table')}")


def tables(board: Board, *, latex: bool = False) -> Sequence[TextTable]:
    return [task_table(board, tb, latex=latex) for tb in board.tasks]


__all__ = [
    "EXCLUDES_ZERO",
    "FORMATS",
    "HOLM",
    "TextTable",
    "delta_text",
    "label_text",
    "latex_escape",
    "mean_ci_text",
    "records",
    "render",
    "tables",
    "task_notes",
    "task_table",
    "to_csv",
    "to_latex",
    "to_markdown",
]
