"""Writing a report: :func:`write_report` takes the tables of an analysis and what to
show beside them (:class:`ReportMeta`), draws and writes every file. It computes no
statistics: everything it shows is a table of :class:`~analysis.stats.AnalysisTables`.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.report import figures
from analysis.report.files import CONDITION_TABLES, TABLES, ReportFiles
from analysis.report.formatting import with_integers
from analysis.report.html import DrawnFigure, render_html
from analysis.stats import AnalysisTables


@dataclass(frozen=True)
class ReportMeta:
    """What a report shows beside the tables.

    ``title``: the page's title. ``details``: facts about the data for the page and
    summary.json's ``meta`` (``source``, ``study``, ``synthetic``, ``models`` with
    ``trained``...). The t-SNE plots come from ``projections``: ``{model: seed ->
    (cases with case/truth, n x 2 points) or None}``, points stored with the inference
    runs (the database path), or from ``embeddings``: ``{model: (cases, n x d
    matrix)}``, which the report fits itself. ``gradcams``: dicts with ``image`` (a path
    or a file object) or ``path``, model, case, truth, answer and optionally ``url``, the
    address of the full overlay that the gallery's thumbnail links to.
    """

    title: str
    details: dict = field(default_factory=dict)
    embeddings: dict[str, tuple[pd.DataFrame, np.ndarray]] = field(default_factory=dict)
    projections: dict[str, figures.Projection] = field(default_factory=dict)
    gradcams: list[dict] = field(default_factory=list)


# --- versions and JSON ------------------------------------------------------------------


def platform_version() -> str:
    """The readerstudy version: installed package metadata, else pyproject.toml."""
    from importlib import metadata

    try:
        return metadata.version("readerstudy")
    except metadata.PackageNotFoundError:
        pass
    try:
        import tomllib

        pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
        return tomllib.loads(pyproject.read_text())["project"]["version"] + " (source tree)"
    except (OSError, KeyError, ValueError):
        return "unknown"


def software_versions() -> dict[str, str]:
    """Versions of Python and every library the numbers and figures depend on."""
    import django
    import matplotlib
    import scipy
    import sklearn
    import statsmodels

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "scipy": scipy.__version__,
        "statsmodels": statsmodels.__version__,
        "scikit-learn": sklearn.__version__,
        "matplotlib": matplotlib.__version__,
        "django": django.get_version(),
        "readerstudy": platform_version(),
    }


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (dt.datetime, dt.date, Path)):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _clean(value):
    """NaN/inf -> None, recursively, so summary.json is strict JSON."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


# --- the workbook -------------------------------------------------------------------------


def write_workbook(path: Path, sheets: dict[str, pd.DataFrame]) -> None:
    """One sheet per table: the column names and then the rows, missing values as empty
    cells, as ``DataFrame.to_excel(index=False)`` writes them, through openpyxl's
    write-only mode, which streams the rows (half the time for the 18,000 rows of a
    reference-size study)."""
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    for name, frame in sheets.items():
        sheet = book.create_sheet(name)
        sheet.append([str(column) for column in frame.columns])
        columns = [_cell_values(frame[c]) for c in frame.columns]
        for row in zip(*columns, strict=True):
            sheet.append(row)
    book.save(path)


def _cell_values(column: pd.Series) -> list:
    """A column as Python values for openpyxl: NaN and NA as None (an empty cell), an
    infinity as the text ``inf`` / ``-inf`` (pandas' ``inf_rep``: Excel has no
    infinite numbers)."""
    values = column.astype(object).where(column.notna(), None)
    if pd.api.types.is_float_dtype(column.dtype):
        infinite = np.isinf(column.to_numpy(dtype=float, na_value=np.nan))
        if infinite.any():
            values[infinite] = np.where(column[infinite] > 0, "inf", "-inf")
    return values.tolist()


# --- study facts --------------------------------------------------------------------------


def _number(x: float) -> int | float:
    """A whole number as an int (a median of 200 answers is 200, not 200.0)."""
    return int(x) if float(x).is_integer() else float(x)


def study_facts(tables: AnalysisTables, details: dict) -> dict:
    """Cases per class, the readers counted (and how many were left out), answers per
    reader, models and their training status. With several reading conditions a reader
    and a case count once, a reader's answers are those of every condition, and a
    reader answered every case who did so in every condition."""
    cases = tables.cases
    readers = tables.readers
    if tables.conditions is not None:
        cases = cases.drop_duplicates("case")
        if len(readers):
            readers = readers.groupby("reader", sort=True).agg(
                n_answers=("n_answers", "sum"), complete=("complete", "all")
            )
    choices = tables.summary.choices
    per_class = cases["truth"].value_counts().reindex(list(choices), fill_value=0)
    answers = readers["n_answers"] if len(readers) else pd.Series(dtype=float)
    models = list(details.get("models") or [])
    known = {m["name"] for m in models}
    models += [{"name": n, "trained": None} for n in tables.summary.models if n not in known]
    selection = tables.summary.readers
    return {
        "n_cases": len(cases),
        "cases_per_class": [{"class": c, "n": int(n)} for c, n in per_class.items()],
        "n_readers": len(readers),
        "n_complete_readers": int(readers["complete"].sum()) if len(readers) else 0,
        "readers_rule": selection.rule if selection else None,
        "n_readers_left_out": selection.n_left_out if selection else 0,
        "answers_per_reader": {
            "min": int(answers.min()) if len(answers) else 0,
            "median": _number(answers.median()) if len(answers) else 0,
            "max": int(answers.max()) if len(answers) else 0,
        },
        "n_answers": int(answers.sum()) if len(answers) else 0,
        "models": models,
        "untrained_models": [m["name"] for m in models if m.get("trained") is False],
        "synthetic": details.get("synthetic"),
    }


# --- the report ---------------------------------------------------------------------------


def write_report(
    tables: AnalysisTables,
    out_dir: str | Path,
    meta: ReportMeta,
    *,
    progress: bool = False,
    on_step: Callable[[str, int, int], None] | None = None,
) -> ReportFiles:
    """Write every table (CSV and one Excel sheet each), summary.json, the figures (PNG
    and SVG; the Grad-CAM gallery as one JPEG) and report.html into ``out_dir`` (created
    if missing) and return the paths. The same tables, seed and meta give the same files.
    ``on_step(what, done, total)`` is told after each table file set, the workbook, each
    figure and the page (the console's progress bar)."""
    from tqdm import tqdm

    details = dict(meta.details)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    steps = tqdm(total=4, desc="report", unit="step", disable=not progress)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[step] = timings.get(step, 0.0) + now - clock
        clock = now

    jobs = figures.figure_jobs(
        tables,
        embeddings=meta.embeddings,
        projections=meta.projections,
        gradcams=meta.gradcams,
    )
    total_steps, done_steps = 3 + len(jobs), 0

    def told(what: str) -> None:
        nonlocal done_steps
        done_steps += 1
        if on_step is not None:
            on_step(what, done_steps, total_steps)

    # Counts as integers in the CSV files and the workbook alike (the page does the same).
    frames = {name: with_integers(getattr(tables, name)) for name in TABLES}
    if tables.conditions is not None:
        frames.update(
            {name: with_integers(getattr(tables.conditions, name)) for name in CONDITION_TABLES}
        )
    written: dict[str, Path] = {}
    for name in frames:
        path = out / f"{name}.csv"
        frames[name].to_csv(path, index=False)
        written[name] = path
    lap("csv")
    steps.set_postfix_str("tables")
    steps.update()
    told("tables written")

    workbook = out / "report.xlsx"
    write_workbook(workbook, {name[:31]: frame for name, frame in frames.items()})
    lap("workbook")
    steps.set_postfix_str("workbook")
    steps.update()
    told("workbook written")

    made: list[DrawnFigure] = []
    used: set[str] = set()
    for job in tqdm(jobs, desc="figures", unit="fig", disable=not progress, leave=False):
        # Two model names may sanitise to the same stem ("a b", "a_b"): keep both files.
        stem, n = job.stem, 1
        while stem in used:
            n += 1
            stem = f"{job.stem}-{n}"
        used.add(stem)
        written_figure = job.write(out, stem)
        if written_figure is not None:
            made.append(
                DrawnFigure(
                    job.title,
                    stem,
                    written_figure.paths,
                    job.caption,
                    areas=written_figure.areas,
                    size=written_figure.size,
                    section=job.section,
                )
            )
        lap(f"figures {stem.split('_', 1)[0].split('-', 1)[0]}")
        told(f"figure: {job.title}")
    steps.set_postfix_str("figures")
    steps.update()

    facts = study_facts(tables, details)
    versions = software_versions()
    generated = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    summary_path = out / "summary.json"
    payload = {
        **tables.summary.to_dict(),
        "title": meta.title,
        "generated_at": generated,
        "meta": details,
        "facts": facts,
        "software": versions,
        # Milliseconds are plenty for how long a step took.
        "timings": tables.timings.round({"seconds": 3}).to_dict(orient="records"),
        **({"conditions": tables.conditions.to_dict()} if tables.conditions is not None else {}),
        "files": [
            *(p.name for p in written.values()),
            "summary.json",
            "report.xlsx",
            "report.html",
            *(p.name for f in made for p in f.paths),
        ],
    }
    summary_path.write_text(json.dumps(_clean(payload), indent=2, default=_json_default) + "\n")

    html = out / "report.html"
    html.write_text(
        render_html(
            tables,
            title=meta.title,
            meta=details,
            facts=facts,
            versions=versions,
            generated=generated,
            figures=made,
        ),
        encoding="utf-8",
    )
    lap("html")
    steps.set_postfix_str("html")
    steps.update()
    steps.close()
    told("report.html written")
    return ReportFiles(
        out_dir=out,
        tables=written,
        summary=summary_path,
        workbook=workbook,
        html=html,
        figures=[p for f in made for p in f.paths],
        timings=timings,
    )
