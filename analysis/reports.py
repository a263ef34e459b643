"""A study's analysis as files: CSV tables, summary.json, an Excel workbook, figures
(PNG + SVG) and one self-contained HTML page to send to a co-author.

:func:`write_report` takes the :class:`~analysis.stats.AnalysisTables` of a study and
writes every file into a folder; :data:`REPORT_FILES` and :func:`figure_names` list the
names it may write, which is what the download view accepts (never a path from a request).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import figures
from analysis.stats import AnalysisTables
from analysis.stats.metrics import METRICS
from analysis.stats.pipeline import ALL_READERS
from analysis.stats.roc import roc_curves

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
REPORT_FILES = (*(f"{t}.csv" for t in TABLES), "summary.json", "report.xlsx", "report.html")
FIGURE_KINDS = ("confusion", "roc", "forest", "tsne", "gradcam")
METRIC_ORDER = (*METRICS, "top1_accuracy")
DASH = "\u2013"  # shown for a missing value and between CI bounds


@dataclass(frozen=True)
class ReportFiles:
    """The files one call of :func:`write_report` wrote (absolute paths), and the seconds
    each step took: ``csv``, ``workbook``, ``figures <kind>`` (summed over the figures of
    that kind, PNG and SVG), ``html`` (summary.json and the page)."""

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


def is_report_file_name(name: str) -> bool:
    """Whether ``name`` is a name :func:`write_report` could have written (a fixed table
    name, or ``<kind>_<safe name>.png|svg``): a plain file name, never a path."""
    if name in REPORT_FILES:
        return True
    stem, _, suffix = name.rpartition(".")
    kind = stem.split("_", 1)[0]
    return (
        suffix in ("png", "svg")
        and kind in FIGURE_KINDS
        and figures.safe_name(stem) == stem
        and "/" not in name
    )


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

        pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
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


# --- study facts --------------------------------------------------------------------------


def study_facts(
    tables: AnalysisTables,
    choices: Sequence[str],
    answers_df: pd.DataFrame | None,
    predictions_df: pd.DataFrame | None,
    meta: dict,
) -> dict:
    """Cases per class, readers and answers per reader, models and their training status."""
    frames = [
        f[["case", "truth"]] for f in (answers_df, predictions_df) if f is not None and len(f)
    ]
    cases = (
        pd.concat(frames).astype(str).drop_duplicates("case")
        if frames
        else pd.DataFrame(columns=["case", "truth"])
    )
    per_class = cases["truth"].value_counts().reindex(list(choices), fill_value=0)
    readers = tables.readers
    answers = readers["n_answers"] if len(readers) else pd.Series(dtype=float)
    models = list(meta.get("models") or [])
    known = {m["name"] for m in models}
    models += [
        {"name": n, "trained": None} for n in tables.summary.get("models", []) if n not in known
    ]
    return {
        "n_cases": len(cases),
        "cases_per_class": [{"class": c, "n": int(n)} for c, n in per_class.items()],
        "n_readers": len(readers),
        "n_complete_readers": int(readers["complete"].sum()) if len(readers) else 0,
        "answers_per_reader": {
            "min": int(answers.min()) if len(answers) else 0,
            "median": float(answers.median()) if len(answers) else 0,
            "max": int(answers.max()) if len(answers) else 0,
        },
        "n_answers": int(answers.sum()) if len(answers) else 0,
        "models": models,
        "untrained_models": [m["name"] for m in models if m.get("trained") is False],
        "synthetic": meta.get("synthetic"),
    }


def report_notes(tables: AnalysisTables, facts: dict) -> list[str]:
    """Plain sentences for the top of the page saying which tables are left out and why:
    no reader answers yet, a single reader (MRMC needs two), no model predictions."""
    n_readers, has_models = facts["n_readers"], bool(tables.summary.get("models"))
    notes = []
    if n_readers == 0:
        notes.append(
            "No reader answers yet: the readers' tables, the comparisons of the models with "
            "the readers and the agreement among readers are omitted; only the models' "
            "tables are shown."
        )
    elif n_readers == 1:
        notes.append(
            "Only one reader: the MRMC comparisons (mrmc_rrrc, mrmc_rrfc) need at least two "
            "readers and are omitted, and the intervals over readers, the z_kappa test and "
            f"Fleiss' kappa among readers are undefined (shown as {DASH})"
            + ("; the bootstrap resamples the cases only." if has_models else ".")
        )
    subgroup, per_class = tables.summary.get("subgroup"), tables.per_class
    if subgroup and n_readers > 1 and "subgroup" in per_class.columns:
        rows = per_class[per_class["rater_kind"] == "reader"]
        sizes = rows.groupby(rows["subgroup"].astype(str))["rater"].nunique()
        single = sorted(sizes[sizes == 1].index)
        if single:
            notes.append(
                f"Subgroup(s) {', '.join(single)} of {subgroup} have a single reader: their "
                "intervals over readers are undefined and MRMC needs at least two readers."
            )
    if not has_models:
        notes.append(
            "No model predictions: the models' tables, ROC curves and the comparisons with "
            "the readers are omitted."
        )
    notes.extend(f"Warning: {w}" for w in tables.summary.get("warnings", []))
    return notes


# --- HTML tables --------------------------------------------------------------------------


def _fmt_p(p) -> str:
    if pd.isna(p):
        return DASH
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def _fmt_num(x, digits: int = 3) -> str:
    if pd.isna(x):
        return DASH
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        if np.isinf(x):
            return "∞"
        return f"{x:.{digits}f}"
    return str(x)


def html_table(frame: pd.DataFrame, *, index: bool = False) -> str:
    """Escaped HTML of ``frame`` with p-values to 4 decimals, df to 1, other floats to 3."""
    shown = frame.copy()
    for column in shown.columns:
        name = str(column)
        if name in ("p", "p_adjusted"):
            shown[column] = shown[column].map(_fmt_p)
        elif name in ("df", "df1", "df2"):
            shown[column] = shown[column].map(lambda x: _fmt_num(x, 1))
        else:
            shown[column] = shown[column].map(_fmt_num)
    return shown.to_html(index=index, border=0, classes="data", escape=True, na_rep=DASH)


def _interval(est, lo, hi) -> str:
    if pd.isna(est):
        return DASH
    if pd.isna(lo) or pd.isna(hi):
        return f"{est:.3f}"
    return f"{est:.3f} ({lo:.3f}{DASH}{hi:.3f})"


def group_metrics_table(per_class: pd.DataFrame, choices: Sequence[str]) -> pd.DataFrame:
    """Readers' mean and each model, one column each, rows class x metric, cells
    'estimate (CI)': the per-reader rows are in per_class.csv."""
    if "subgroup" in per_class.columns:
        per_class = per_class[per_class["subgroup"] == "all readers"]
    rows = per_class[per_class["rater_kind"] != "reader"].copy()
    if rows.empty:
        return pd.DataFrame()
    rows["cell"] = [
        _interval(e, lo, hi)
        for e, lo, hi in zip(rows["estimate"], rows["ci_low"], rows["ci_high"], strict=True)
    ]
    wide = rows.pivot_table(
        index=["class", "metric"], columns="rater", values="cell", aggfunc="first"
    )
    order = [(c, m) for c in [*choices, "all"] for m in METRIC_ORDER if (c, m) in wide.index]
    raters = ["readers", *sorted(r for r in wide.columns if r != "readers")]
    wide = wide.reindex(index=order, columns=[r for r in raters if r in wide.columns]).fillna(DASH)
    wide.columns.name = None
    return wide.reset_index()


def subgroup_table(per_class: pd.DataFrame) -> pd.DataFrame:
    """Readers' mean overall metrics per subgroup value (empty without a subgroup)."""
    if "subgroup" not in per_class.columns:
        return pd.DataFrame()
    rows = per_class[(per_class["rater_kind"] == "readers") & (per_class["class"] == "all")]
    rows = rows.assign(
        cell=[
            _interval(e, lo, hi)
            for e, lo, hi in zip(rows["estimate"], rows["ci_low"], rows["ci_high"], strict=True)
        ]
    )
    wide = rows.pivot_table(index="subgroup", columns="metric", values="cell", aggfunc="first")
    wide = wide.reindex(columns=[m for m in METRIC_ORDER if m in wide.columns])
    wide.columns.name = None
    return wide.reset_index()


# --- figures ------------------------------------------------------------------------------


@dataclass
class _Figure:
    title: str
    stem: str
    paths: list[Path]
    caption: str = ""

    def png_base64(self) -> str:
        png = next(p for p in self.paths if p.suffix == ".png")
        return base64.b64encode(png.read_bytes()).decode("ascii")


def _stem(kind: str, name: str | None = None) -> str:
    return kind if name is None else f"{kind}_{figures.safe_name(name)}"


def _figure_jobs(
    tables: AnalysisTables,
    choices: Sequence[str],
    predictions_df: pd.DataFrame | None,
    embeddings: dict | None,
    gradcams: list | None,
    seed: int,
    alpha: float,
):
    """(title, stem, caption, thunk returning a Figure or None) for every figure."""
    jobs = []
    tables = tables.for_subgroup()  # figures show all readers; subgroups are in the tables
    per_class = tables.per_class
    raters = list(pd.unique(tables.confusion["rater"])) if len(tables.confusion) else []
    for rater in raters:
        title = "Readers (pooled)" if rater == "readers" else f"Model {rater}"
        jobs.append(
            (
                f"Confusion matrix: {title}",
                _stem("confusion", rater),
                "Rows: reference diagnosis; columns: answer; colour: fraction of the row.",
                lambda rater=rater: figures.confusion_figure(tables.confusion, rater, choices),
            )
        )
    if predictions_df is not None and len(tables.auc):
        from analysis.stats.inputs import PROB_PREFIX

        index = {c: i for i, c in enumerate(choices)}
        for model in tables.summary.get("models", []):
            part = predictions_df[predictions_df["model"].astype(str) == model]
            probs = [PROB_PREFIX + c for c in choices]
            if part.empty or not all(p in part.columns for p in probs):
                continue
            truth = part["truth"].astype(str).map(index).to_numpy()
            matrix = part[probs].to_numpy(dtype=float)
            ok = ~np.isnan(matrix).any(axis=1) & ~pd.isna(truth)
            curves = roc_curves(truth[ok].astype(int), matrix[ok], list(choices))
            jobs.append(
                (
                    f"ROC curves: {model}",
                    _stem("roc", model),
                    "One-vs-rest ROC curve of the model per class; dots: each reader's "
                    "(1 - specificity, sensitivity); diamond: the readers' mean; star: the "
                    "model's top-1 answer.",
                    lambda model=model, curves=curves: figures.roc_figure(
                        model, curves, tables.auc, per_class, choices
                    ),
                )
            )
    if len(tables.comparisons):
        jobs.append(
            (
                "CNN minus readers",
                "forest",
                "Differences model - readers with their confidence intervals, by method; "
                "per-class rows are not adjusted for multiplicity here (see p_adjusted).",
                lambda: figures.forest_figure(tables.comparisons, alpha=alpha),
            )
        )
    for model, (cases, matrix) in (embeddings or {}).items():
        jobs.append(
            (
                f"t-SNE of the embeddings: {model}",
                _stem("tsne", model),
                "Last hidden layer, two-dimensional t-SNE, coloured by the reference diagnosis.",
                lambda model=model, cases=cases, matrix=matrix: figures.tsne_figure(
                    model, cases, matrix, choices, seed=seed
                ),
            )
        )
    if gradcams:
        jobs.append(
            (
                "Grad-CAM saliency",
                "gradcam",
                "Regions that drove the model's top-1 answer (✗: the answer was wrong).",
                lambda: figures.gradcam_figure(gradcams),
            )
        )
    return jobs


# --- the report ---------------------------------------------------------------------------


def write_report(
    tables: AnalysisTables,
    out_dir: str | Path,
    *,
    title: str,
    choices: Sequence[str],
    meta: dict | None = None,
    embeddings: dict[str, tuple[pd.DataFrame, np.ndarray]] | None = None,
    gradcams: list | None = None,
    predictions_df: pd.DataFrame | None = None,
    answers_df: pd.DataFrame | None = None,
    progress: bool = False,
) -> ReportFiles:
    """Write every table (CSV and one Excel sheet each), summary.json, the figures (PNG
    and SVG) and report.html into ``out_dir`` (created if missing) and return the paths.

    ``meta``: facts for the page (``synthetic``, ``models`` with ``trained``, ``source``,
    ``study``...). ``embeddings``: ``{model: (cases with case/truth, n x d matrix)}`` for
    the t-SNE plots. ``gradcams``: dicts with ``path`` (or ``image``), model, case, truth,
    answer. The same tables, seed and inputs give the same files.
    """
    from tqdm import tqdm

    meta = dict(meta or {})
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    choices = list(choices)
    summary = tables.summary
    seed = int(summary.get("seed", 0))
    alpha = float(summary.get("alpha", 0.05))
    steps = tqdm(total=4, desc="report", unit="step", disable=not progress)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[step] = timings.get(step, 0.0) + now - clock
        clock = now

    written: dict[str, Path] = {}
    for name in TABLES:
        path = out / f"{name}.csv"
        getattr(tables, name).to_csv(path, index=False)
        written[name] = path
    lap("csv")
    steps.set_postfix_str("tables")
    steps.update()

    workbook = out / "report.xlsx"
    with pd.ExcelWriter(workbook, engine="openpyxl") as excel:
        for name in TABLES:
            getattr(tables, name).to_excel(excel, sheet_name=name[:31], index=False)
    lap("workbook")
    steps.set_postfix_str("workbook")
    steps.update()

    made: list[_Figure] = []
    jobs = _figure_jobs(tables, choices, predictions_df, embeddings, gradcams, seed, alpha)
    used: set[str] = set()
    for title_, stem, caption, build in tqdm(
        jobs, desc="figures", unit="fig", disable=not progress, leave=False
    ):
        # Two model names may sanitise to the same stem ("a b", "a_b"): keep both files.
        unique, n = stem, 1
        while unique in used:
            n += 1
            unique = f"{stem}-{n}"
        used.add(unique)
        stem = unique
        fig = build()
        if fig is not None:
            made.append(_Figure(title_, stem, figures.save(fig, out, stem), caption))
        lap(f"figures {stem.split('_', 1)[0].split('-', 1)[0]}")
    steps.set_postfix_str("figures")
    steps.update()

    facts = study_facts(tables, choices, answers_df, predictions_df, meta)
    versions = software_versions()
    generated = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    summary_path = out / "summary.json"
    payload = {
        **summary,
        "title": title,
        "generated_at": generated,
        "meta": meta,
        "facts": facts,
        "software": versions,
        "timings": tables.timings.to_dict(orient="records"),
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
            title=title,
            choices=choices,
            meta=meta,
            facts=facts,
            versions=versions,
            generated=generated,
            figures_=made,
        ),
        encoding="utf-8",
    )
    lap("html")
    steps.set_postfix_str("html")
    steps.update()
    steps.close()
    return ReportFiles(
        out_dir=out,
        tables=written,
        summary=summary_path,
        workbook=workbook,
        html=html,
        figures=[p for f in made for p in f.paths],
        timings=timings,
    )


def _subgroup_rows(frame: pd.DataFrame, *, all_readers: bool) -> pd.DataFrame:
    """The rows of all readers (``all_readers``) or of the subgroup values (otherwise);
    the frame as it is without a subgroup."""
    if "subgroup" not in frame.columns:
        return frame if all_readers else frame.iloc[0:0]
    keep = frame["subgroup"] == ALL_READERS
    return frame[keep if all_readers else ~keep].reset_index(drop=True)


def _sections(tables: AnalysisTables, choices: Sequence[str]) -> list[dict]:
    sections = []
    everyone = tables.for_subgroup()  # subgroup blocks get their own sections

    def add(key, heading, text, frame, *, index=False):
        if frame is not None and len(frame):
            sections.append(
                {
                    "key": key,
                    "heading": heading,
                    "text": text,
                    "html": html_table(frame, index=index),
                }
            )

    add(
        "headline",
        "Overall",
        "Class all: accuracy, sensitivity, specificity, PPV, NPV and F1 are macro averages "
        "of the one-vs-rest values (for accuracy the macro one-vs-rest accuracy, "
        "1 - 2(1 - top-1)/C, not the share of cases answered correctly, which is "
        "top1_accuracy); kappa is the multi-class kappa; readers = mean over readers.",
        pd.DataFrame(tables.summary.get("overall", [])),
    )
    wide = group_metrics_table(tables.per_class, choices)
    if len(wide):
        sections.append(
            {
                "key": "per_class",
                "heading": "Per-class metrics (readers' mean and each model)",
                "text": "Estimate (95% CI). Each reader's own rows are in per_class.csv.",
                "html": wide.to_html(index=False, border=0, classes="data", escape=True),
            }
        )
    summary_all = everyone.readers_summary
    if len(summary_all):
        summary_all = summary_all[summary_all["class"] == "all"]
    add(
        "readers_summary",
        "Readers as a group",
        "Over readers, class all: number of readers, mean, SD, median, range and the "
        "t-interval of the mean. Every class is in readers_summary.csv.",
        summary_all,
    )
    kappa = everyone.kappa
    if len(kappa):
        kappa = kappa[kappa["rater_kind"] == "model"]
    add(
        "kappa",
        "Models' Cohen's kappa",
        "Each class one-vs-rest, all = multi-class; ase: Fleiss-Cohen-Everitt large-sample "
        "SE, Wald CI; ase0, z, p: the test of kappa = 0. Each reader's rows are in kappa.csv.",
        kappa,
    )
    add(
        "subgroups",
        "Readers by subgroup",
        "Readers' mean overall metrics per subgroup.",
        subgroup_table(tables.per_class),
    )
    comparisons = everyone.comparisons
    if len(comparisons):
        comparisons = comparisons.sort_values(["model", "metric", "method"], kind="stable")
    add(
        "comparisons",
        "CNN versus readers",
        "difference = model - readers; p_adjusted: "
        "per-class p-values adjusted within model x metric x method.",
        comparisons,
    )
    by_subgroup = _subgroup_rows(tables.comparisons, all_readers=False)
    if len(by_subgroup):
        by_subgroup = by_subgroup[by_subgroup["class"] == "all"].sort_values(
            ["subgroup", "model", "metric", "method"], kind="stable"
        )
    add(
        "comparisons_subgroups",
        "CNN versus each subgroup of readers",
        "Class all, each subgroup's readers as the panel; every class is in comparisons.csv.",
        by_subgroup,
    )
    add("auc", "Model ROC AUC", "One-vs-rest AUC with DeLong SE and Wald CI.", tables.auc)
    add("auc_tests", "Model versus model (DeLong)", "", tables.auc_tests)
    add(
        "agreement",
        "Agreement",
        "Among readers (Fleiss' kappa) and of each model with the readers; "
        "majority_ties: cases whose majority answer was tied (broken by choice order). "
        "Each subgroup's rows are in agreement.csv.",
        everyone.agreement,
    )
    add("readers", "Readers", "Answers per reader and reader attributes.", tables.readers)
    return sections


def render_html(
    tables: AnalysisTables,
    *,
    title: str,
    choices: Sequence[str],
    meta: dict,
    facts: dict,
    versions: dict,
    generated: str,
    figures_: list[_Figure],
) -> str:
    """The self-contained report page (figures as base64 PNG, no external requests)."""
    from django.template.loader import render_to_string
    from django.utils.safestring import mark_safe

    sections = [{**s, "html": mark_safe(s["html"])} for s in _sections(tables, choices)]
    summary = tables.summary
    context = {
        "title": title,
        "generated": generated,
        "meta": meta,
        "facts": facts,
        "choices": choices,
        "summary": summary,
        "confidence": round(100 * (1 - float(summary.get("alpha", 0.05)))),
        "sections": sections,
        "figures": [
            {"title": f.title, "caption": f.caption, "png": f.png_base64(), "stem": f.stem}
            for f in figures_
        ],
        "versions": versions,
        "notes": report_notes(tables, facts),
        "methods": {
            "has_readers": facts["n_readers"] > 0,
            "has_models": bool(facts["models"]),
            "has_comparisons": len(tables.comparisons) > 0,
            "has_auc": len(tables.auc) > 0,
            "has_auc_tests": len(tables.auc_tests) > 0,
            "has_embeddings": any(f.stem.startswith("tsne") for f in figures_),
        },
    }
    return render_to_string("analysis/report.html", context)
