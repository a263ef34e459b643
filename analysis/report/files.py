"""The files a report may contain: fixed table names, ``<kind>_<safe name>`` figures
(PNG and SVG) and the Grad-CAM gallery (``gradcam.jpg``).

:data:`TABLES` are in every report; :data:`CONDITION_TABLES` only in the report of a
study of several reading conditions (:class:`analysis.stats.conditions.ConditionTables`),
where every table of :data:`TABLES` also starts with a ``condition`` column.

:func:`is_report_file_name` is what the download view accepts (never a path from a
request); :class:`ReportFiles` lists what one report wrote.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

TABLES = (
    "per_class",
    "readers_summary",
    "kappa",
    "comparisons",
    "agreement",
    "auc",
    "auc_tests",
    "counts",
    "confusion",
    "readers",
)
CONDITION_TABLES = (
    "conditions",
    "condition_pairs",
    "condition_or",
    "condition_bootstrap",
    "condition_mcnemar",
    "ai_vs_readers",
    "switching",
    "cnn_following",
    "reader_gains",
    "gain_regression",
    "gain_fit",
    "power",
)
REPORT_FILES = (*(f"{t}.csv" for t in TABLES), "summary.json", "report.xlsx", "report.html")
CONDITION_FILES = tuple(f"{t}.csv" for t in CONDITION_TABLES)
FIGURE_KINDS = (
    "confusion", "roc", "forest", "tsne", "gradcam",
    # several reading conditions, per pair: gain by experience, condition vs condition,
    # how the answers changed with the CNN, and how often the readers took its answer
    "gain", "conditions", "switching", "following",
)  # fmt: skip
# The suffixes of each kind's files (else PNG and SVG): the gallery is a grid of
# photographs, a JPEG; reports written before it was still list gradcam.png and .svg.
FIGURE_SUFFIXES = {"gradcam": ("jpg", "png", "svg")}


def safe_name(text: str) -> str:
    """A file-name fragment: letters, digits, ``-``, ``_`` and ``.`` only."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("._") or "x"


def figure_stem(kind: str, name: str | None = None) -> str:
    """``kind`` or ``<kind>_<safe name>``: a figure's file name without the suffix."""
    return kind if name is None else f"{kind}_{safe_name(name)}"


def is_report_file_name(name: str) -> bool:
    """Whether ``name`` is a name a report could have written (a fixed table name, one of
    the tables of several conditions, ``<kind>_<safe name>.png|svg`` or the gallery's
    ``gradcam.jpg``): a plain file name, never a path."""
    if name in REPORT_FILES or name in CONDITION_FILES:
        return True
    stem, _, suffix = name.rpartition(".")
    kind = stem.split("_", 1)[0]
    return (
        kind in FIGURE_KINDS
        and suffix in FIGURE_SUFFIXES.get(kind, ("png", "svg"))
        and safe_name(stem) == stem
        and "/" not in name
    )


@dataclass(frozen=True)
class ReportFiles:
    """The files one report wrote (absolute paths), and the seconds each step took:
    ``csv``, ``workbook``, ``figures <kind>`` (summed over the figures of that kind, all
    their formats), ``html`` (summary.json and the page)."""

    out_dir: Path
    tables: dict[str, Path]
    summary: Path
    workbook: Path
    html: Path
    figures: list[Path] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def paths(self) -> list[Path]:
        """Every file, tables first."""
        return [*self.tables.values(), self.summary, self.workbook, self.html, *self.figures]

    def names(self) -> list[str]:
        return [p.name for p in self.paths()]
