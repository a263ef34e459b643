"""Report figures with matplotlib (Agg backend): each ``*_figure`` function returns a
Figure, and :func:`figure_jobs` lists the figures of a report with their captions.

No Django here, and nothing is computed from raw data: every figure draws a table of
:class:`~analysis.stats.AnalysisTables` (the embeddings and Grad-CAM overlays come with
the report's meta). Colours come from matplotlib's default cycle and the ``viridis`` map
(colour-blind safe); every figure is saved as PNG (for the HTML page) and SVG (for a
manuscript) by :func:`save`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.report.files import figure_stem
from analysis.stats import AnalysisTables

METHOD_LABELS = {
    "z_kappa": "adjusted z (kappa)",
    "bootstrap": "paired bootstrap",
    "mrmc_rrrc": "MRMC 1T-RRRC",
    "mrmc_rrfc": "MRMC 1T-RRFC",
}
FOREST_METRICS = ("kappa", "sensitivity", "specificity", "accuracy")


def save(fig: Figure, out_dir: Path, stem: str) -> list[Path]:
    """Write ``stem.png`` (150 dpi) and ``stem.svg`` into ``out_dir``; closes the figure."""
    paths = []
    for suffix, kwargs in ((".png", {"dpi": 150}), (".svg", {})):
        path = Path(out_dir) / f"{stem}{suffix}"
        fig.savefig(path, bbox_inches="tight", metadata=_metadata(suffix), **kwargs)
        paths.append(path)
    plt.close(fig)
    return paths


def _metadata(suffix: str) -> dict:
    # Fixed metadata so the same data give byte-identical SVGs (no creation date).
    return {"Date": None} if suffix == ".svg" else {}


def confusion_figure(confusion: pd.DataFrame, rater: str, choices: Sequence[str]) -> Figure:
    """Counts of truth (rows) x answer (columns) for one rater; cells coloured by the
    row fraction so classes of different sizes compare."""
    table = (
        confusion[confusion["rater"] == rater]
        .pivot_table(index="truth", columns="answer", values="count", aggfunc="sum")
        .reindex(index=list(choices), columns=list(choices))
        .fillna(0)
        .to_numpy()
    )
    rows = table.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.where(rows > 0, table / rows, 0.0)
    c = len(choices)
    size = max(3.5, 0.55 * c + 1.5)
    fig, ax = plt.subplots(figsize=(size + 0.8, size))
    image = ax.imshow(fraction, cmap="viridis", vmin=0, vmax=1)
    for i in range(c):
        for j in range(c):
            ax.text(
                j,
                i,
                f"{int(table[i, j])}",
                ha="center",
                va="center",
                fontsize=8,
                color="black" if fraction[i, j] > 0.6 else "white",
            )
    ax.set_xticks(range(c), choices, rotation=45, ha="right")
    ax.set_yticks(range(c), choices)
    ax.set_xlabel("answer")
    ax.set_ylabel("reference diagnosis")
    ax.set_title(
        "Confusion matrix: readers (pooled)" if rater == "readers" else f"Confusion matrix: {rater}"
    )
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the row")
    return fig


def _grid(n: int) -> tuple[int, int]:
    cols = min(4, n)
    return int(np.ceil(n / cols)), cols


def roc_figure(
    model: str,
    curves: pd.DataFrame,
    auc: pd.DataFrame,
    per_class: pd.DataFrame,
    choices: Sequence[str],
) -> Figure:
    """One panel per class: the model's one-vs-rest ROC curve (AUC in the legend), each
    reader's operating point (1 - specificity, sensitivity), the readers' mean point and
    the model's own top-1 operating point."""
    rows, cols = _grid(len(choices))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
    wide = per_class[per_class["metric"].isin(["sensitivity", "specificity"])].pivot_table(
        index=["rater", "rater_kind", "class"], columns="metric", values="estimate"
    )
    wide = wide.reset_index()
    for ax, code in zip(axes.ravel(), choices, strict=False):
        curve = curves[curves["class"] == code]
        row = auc[(auc["model"] == model) & (auc["class"] == code)]
        label = (
            f"{model} (AUC {row['auc'].iloc[0]:.3f})"
            if len(row) and pd.notna(row["auc"].iloc[0])
            else model
        )
        if len(curve):
            ax.plot(curve["fpr"], curve["tpr"], color="C0", lw=1.5, label=label)
        points = wide[wide["class"] == code]
        readers = points[points["rater_kind"] == "reader"]
        if len(readers):
            ax.scatter(
                1 - readers["specificity"],
                readers["sensitivity"],
                s=12,
                color="C1",
                alpha=0.6,
                label="readers",
            )
        mean = points[points["rater_kind"] == "readers"]
        if len(mean):
            ax.scatter(
                1 - mean["specificity"],
                mean["sensitivity"],
                s=60,
                marker="D",
                color="C3",
                edgecolor="black",
                label="readers' mean",
                zorder=3,
            )
        own = points[(points["rater_kind"] == "model") & (points["rater"] == model)]
        if len(own):
            ax.scatter(
                1 - own["specificity"],
                own["sensitivity"],
                s=60,
                marker="*",
                color="C0",
                edgecolor="black",
                label=f"{model} top-1",
                zorder=3,
            )
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
        ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), title=code, aspect="equal")
        ax.set_xlabel("1 - specificity", fontsize=8)
        ax.set_ylabel("sensitivity", fontsize=8)
        ax.legend(fontsize=6, loc="lower right")
    for ax in axes.ravel()[len(choices) :]:
        ax.axis("off")
    fig.suptitle(f"One-vs-rest ROC curves: {model}")
    fig.tight_layout()
    return fig


def forest_figure(comparisons: pd.DataFrame, *, alpha: float = 0.05) -> Figure | None:
    """Model - readers differences with their CIs, one panel per metric (kappa,
    sensitivity, specificity, accuracy), one row per model x class, one marker per
    method. ``None`` when there is nothing to draw."""
    # Class "all" of accuracy is the macro one-vs-rest accuracy, 1 - 2 (1 - top-1) / C,
    # which looks like overall accuracy but shrinks differences: draw top-1 there instead.
    macro_accuracy = (comparisons["metric"] == "accuracy") & (comparisons["class"] == "all")
    table = comparisons[~macro_accuracy].replace({"metric": {"top1_accuracy": "accuracy"}})
    table = table[table["metric"].isin(FOREST_METRICS)].dropna(subset=["difference"])
    if table.empty:
        return None
    metrics = [m for m in FOREST_METRICS if (table["metric"] == m).any()]
    keys = table[["model", "class"]].drop_duplicates()
    keys = keys.assign(order=keys["class"].eq("all")).sort_values(["model", "order"], kind="stable")
    labels = [f"{m} | {c}" for m, c in zip(keys["model"], keys["class"], strict=True)]
    position = {
        (m, c): i for i, (m, c) in enumerate(zip(keys["model"], keys["class"], strict=True))
    }
    methods = [m for m in METHOD_LABELS if (table["method"] == m).any()]
    offsets = dict(
        zip(
            methods,
            np.linspace(-0.25, 0.25, len(methods)) if len(methods) > 1 else [0.0],
            strict=True,
        )
    )
    height = max(3.0, 0.28 * len(labels) + 1.2)
    fig, axes = plt.subplots(
        1, len(metrics), figsize=(3.4 * len(metrics) + 1.5, height), sharey=True, squeeze=False
    )
    for ax, metric in zip(axes[0], metrics, strict=True):
        part = table[table["metric"] == metric]
        for k, method in enumerate(methods):
            rows = part[part["method"] == method]
            if rows.empty:
                continue
            y = (
                np.array(
                    [position[(m, c)] for m, c in zip(rows["model"], rows["class"], strict=True)]
                )
                + offsets[method]
            )
            d = rows["difference"].to_numpy(dtype=float)
            lo = rows["ci_low"].to_numpy(dtype=float)
            hi = rows["ci_high"].to_numpy(dtype=float)
            # The interval as a line of its own: a percentile bootstrap interval need not
            # contain the point estimate, which error bars (offsets from it) cannot draw.
            ok = np.isfinite(lo) & np.isfinite(hi)
            ax.hlines(y[ok], lo[ok], hi[ok], color=f"C{k}", lw=1)
            ax.plot(np.r_[lo[ok], hi[ok]], np.r_[y[ok], y[ok]], "|", ms=5, color=f"C{k}")
            ax.plot(d, y, "os^D"[k % 4], ms=4, color=f"C{k}", label=METHOD_LABELS[method])
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_title("accuracy (all: top-1)" if metric == "accuracy" else metric)
        ax.set_xlabel("model - readers")
    axes[0, 0].set_yticks(range(len(labels)), labels, fontsize=7)
    axes[0, 0].invert_yaxis()
    handles, names = axes[0, 0].get_legend_handles_labels()
    for ax in axes[0, 1:]:
        h, n = ax.get_legend_handles_labels()
        for handle, name in zip(h, n, strict=True):
            if name not in names:
                handles.append(handle)
                names.append(name)
    fig.legend(
        handles,
        names,
        loc="upper center",
        ncol=len(names),
        fontsize=8,
        bbox_to_anchor=(0.5, 1.0 + 0.25 / height),
    )
    fig.suptitle(f"CNN minus readers, {100 * (1 - alpha):.0f}% CIs", y=1.0 + 0.6 / height)
    fig.tight_layout()
    return fig


def tsne_perplexity(n: int) -> float:
    """30 (the usual default) where there are enough points, else (n - 1) / 3, at least 2:
    scikit-learn requires perplexity < n."""
    return float(min(30.0, max(2.0, (n - 1) / 3)))


def tsne_figure(
    model: str, cases: pd.DataFrame, matrix: np.ndarray, choices: Sequence[str], *, seed: int
) -> Figure | None:
    """2-D t-SNE (scikit-learn, PCA initialisation, ``random_state=seed``, exact up to 500
    points, Barnes-Hut above) of a model's
    embeddings coloured by the reference diagnosis; ``None`` for fewer than 5 cases."""
    from sklearn.manifold import TSNE

    n = matrix.shape[0]
    if n < 5:
        return None
    points = TSNE(
        n_components=2,
        perplexity=tsne_perplexity(n),
        init="pca",
        random_state=seed,
        # Exact gradients are faster than Barnes-Hut's per-iteration overhead below ~500
        # points (a 200-case study: ~4 s instead of ~7 s) and need no approximation.
        method="exact" if n <= 500 else "barnes_hut",
    ).fit_transform(np.asarray(matrix, dtype=np.float64))
    fig, ax = plt.subplots(figsize=(6, 5))
    cmap = plt.get_cmap("tab20" if len(choices) > 10 else "tab10")
    truth = cases["truth"].to_numpy()
    for j, code in enumerate(choices):
        keep = truth == code
        if keep.any():
            ax.scatter(points[keep, 0], points[keep, 1], s=12, color=cmap(j), label=code)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"t-SNE of {model}'s embeddings (n={n}, perplexity {tsne_perplexity(n):.0f})")
    ax.legend(fontsize=7, markerscale=1.5, bbox_to_anchor=(1.02, 1), loc="upper left")
    fig.tight_layout()
    return fig


def gradcam_figure(items: list[dict], *, columns: int = 4) -> Figure | None:
    """A gallery of Grad-CAM overlays (dicts with ``path`` or ``image`` and model, case,
    truth, answer); ``None`` when there are none or none can be read."""
    from PIL import Image

    images = []
    for item in items:
        try:
            source = item.get("image") or item["path"]
            with Image.open(source) as im:
                images.append((item, np.asarray(im.convert("RGB"))))
        except (OSError, KeyError, ValueError):
            continue
    if not images:
        return None
    cols = min(columns, len(images))
    rows = int(np.ceil(len(images) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.9 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (item, pixels) in zip(axes.ravel(), images, strict=False):
        ax.imshow(pixels)
        mark = "" if item.get("truth") == item.get("answer") else " ✗"
        ax.set_title(
            f"{item.get('model', '')}\ntruth {item.get('truth', '?')}, "
            f"said {item.get('answer', '?')}{mark}",
            fontsize=7,
        )
    fig.suptitle("Grad-CAM saliency")
    fig.tight_layout()
    return fig


@dataclass(frozen=True)
class FigureJob:
    """One figure of a report: its heading, file stem and caption, and how to draw it
    (``draw`` returns None when there is nothing to draw)."""

    title: str
    stem: str
    caption: str
    draw: Callable[[], Figure | None]


def figure_jobs(
    tables: AnalysisTables,
    *,
    embeddings: dict[str, tuple[pd.DataFrame, np.ndarray]] | None = None,
    gradcams: list[dict] | None = None,
) -> list[FigureJob]:
    """Every figure of a report, in page order: a confusion matrix per rater, ROC curves
    per model (from ``tables.roc``), the forest plot of the comparisons, a t-SNE per
    model with embeddings and the Grad-CAM gallery. Figures show all readers; the
    subgroups are in the tables."""
    tables = tables.for_subgroup()
    summary = tables.summary
    choices = summary.choices
    jobs = []
    raters = list(pd.unique(tables.confusion["rater"])) if len(tables.confusion) else []
    for rater in raters:
        title = "Readers (pooled)" if rater == "readers" else f"Model {rater}"
        jobs.append(
            FigureJob(
                f"Confusion matrix: {title}",
                figure_stem("confusion", rater),
                "Rows: reference diagnosis; columns: answer; colour: fraction of the row.",
                lambda rater=rater: confusion_figure(tables.confusion, rater, choices),
            )
        )
    if len(tables.auc):
        for model in summary.models:
            curves = tables.roc[tables.roc["model"] == model]
            jobs.append(
                FigureJob(
                    f"ROC curves: {model}",
                    figure_stem("roc", model),
                    "One-vs-rest ROC curve of the model per class; dots: each reader's "
                    "(1 - specificity, sensitivity); diamond: the readers' mean; star: the "
                    "model's top-1 answer.",
                    lambda model=model, curves=curves: roc_figure(
                        model, curves, tables.auc, tables.per_class, choices
                    ),
                )
            )
    if len(tables.comparisons):
        jobs.append(
            FigureJob(
                "CNN minus readers",
                "forest",
                "Differences model - readers with their confidence intervals, by method; "
                "per-class rows are not adjusted for multiplicity here (see p_adjusted).",
                lambda: forest_figure(tables.comparisons, alpha=float(summary.alpha)),
            )
        )
    for model, (cases, matrix) in (embeddings or {}).items():
        jobs.append(
            FigureJob(
                f"t-SNE of the embeddings: {model}",
                figure_stem("tsne", model),
                "Last hidden layer, two-dimensional t-SNE, coloured by the reference diagnosis.",
                lambda model=model, cases=cases, matrix=matrix: tsne_figure(
                    model, cases, matrix, choices, seed=int(summary.seed)
                ),
            )
        )
    if gradcams:
        jobs.append(
            FigureJob(
                "Grad-CAM saliency",
                "gradcam",
                "Regions that drove the model's top-1 answer (✗: the answer was wrong).",
                lambda: gradcam_figure(gradcams),
            )
        )
    return jobs
