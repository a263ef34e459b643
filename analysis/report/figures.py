"""Report figures: each ``*_figure`` function draws a matplotlib Figure (Agg backend),
:func:`gradcam_gallery` composes the Grad-CAM overlays into one raster grid with Pillow,
and :func:`figure_jobs` lists the figures of a report with their captions.

No Django here, and nothing is computed from raw data: every figure draws a table of
:class:`~analysis.stats.AnalysisTables` or what the report's meta brings (t-SNE points
stored with the inference runs, Grad-CAM overlays). Colours come from matplotlib's
default cycle and the ``viridis`` map (colour-blind safe). A matplotlib figure is laid
out once (constrained layout; the ROC figures have a fixed one) and drawn once to each
format by :func:`save`: PNG for the page, SVG for a manuscript, where a scatter of many
points is rasterised. The gallery is a JPEG only: its thumbnails are photographs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.report.files import figure_stem
from analysis.stats import AnalysisTables
from analysis.stats.projection import TSNE_MIN_POINTS, tsne_perplexity, tsne_points

METHOD_LABELS = {
    "z_kappa": "adjusted z (kappa)",
    "bootstrap": "paired bootstrap",
    "mrmc_rrrc": "MRMC 1T-RRRC",
    "mrmc_rrfc": "MRMC 1T-RRFC",
}
FOREST_METRICS = ("kappa", "sensitivity", "specificity", "accuracy")
DPI = 150
# A scatter with more markers than this is rasterised inside the SVG (at DPI): thousands
# of vector markers make a file that is slow to write and to open, for no visible gain.
RASTER_POINTS = 200
# The Grad-CAM gallery: thumbnails of this many pixels, this many per row.
THUMB_PX = 128
GALLERY_COLUMNS = 8
GALLERY_QUALITY = 85
# Okabe & Ito's colour-blind-safe palette (Color Universal Design, 2008) and a neutral
# grey, for the figures where a colour means something (right, wrong, a method).
BLUE, ORANGE, SKY_BLUE, GREEN = "#0072B2", "#E69F00", "#56B4E9", "#009E73"
VERMILLION, PURPLE, GREY = "#D55E00", "#CC79A7", "#999999"
# Each outcome of the switching table: (bar colour, colour of the percentages on it).
SWITCH_COLOURS = {
    "unchanged_correct": (GREEN, "white"),
    "correct_to_incorrect": (VERMILLION, "white"),
    "incorrect_to_correct": (SKY_BLUE, "black"),
    "unchanged_incorrect": (GREY, "black"),
    "changed_still_incorrect": (PURPLE, "black"),
}
# A share of a bar this wide or more gets its percentage written on it.
SHARE_LABEL_MIN = 0.06


@dataclass(frozen=True)
class Area:
    """A clickable rectangle of a figure's image on the page: ``box`` (left, top, right,
    bottom) in the image's pixels, the address it opens and its text."""

    box: tuple[int, int, int, int]
    href: str
    title: str


@dataclass(frozen=True)
class Written:
    """What a figure job wrote: its files (the first one is what the page shows) and the
    areas of that image that link elsewhere (the gallery's thumbnails)."""

    paths: list[Path]
    areas: list[Area] = field(default_factory=list)
    size: tuple[int, int] | None = None  # the page image's pixels, where it has areas


def save(fig: Figure, out_dir: Path, stem: str) -> list[Path]:
    """Write ``stem.png`` and ``stem.svg`` (both at :data:`DPI`, for the rasterised
    parts of the SVG) into ``out_dir`` and close the figure. The layout is computed once,
    then frozen: each format draws the figure once (``bbox_inches="tight"`` would draw it
    twice per format)."""
    engine = fig.get_layout_engine()
    if engine is not None:
        engine.execute(fig)
        # No engine at all: with one (even "none"), savefig draws the figure once more
        # before drawing it to the file.
        fig.set_layout_engine(None)
    paths = []
    for suffix in (".png", ".svg"):
        path = Path(out_dir) / f"{stem}{suffix}"
        fig.savefig(path, dpi=DPI, metadata=_metadata(suffix))
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
    fig, ax = plt.subplots(figsize=(size + 0.8, size), layout="constrained")
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


def operating_points(per_class: pd.DataFrame) -> pd.DataFrame:
    """Each rater's (``rater``, ``rater_kind``, ``class``) sensitivity and specificity in
    columns: the points of the ROC figures, pivoted once for all of them."""
    table = per_class[per_class["metric"].isin(["sensitivity", "specificity"])]
    return table.pivot_table(
        index=["rater", "rater_kind", "class"], columns="metric", values="estimate"
    ).reset_index()


class RocCanvas:
    """The ROC figures of a report's models, drawn on one figure: one panel per class
    with each reader's operating point (1 - specificity, sensitivity) and the readers'
    mean, the same for every model, and for the model drawn by :meth:`draw` its
    one-vs-rest ROC curve (its AUC in the panel's title) and its own top-1 operating
    point. ``points`` is :func:`operating_points`.

    Why one figure: the panels, the readers and the labels are the same in every model's
    figure, and building them is a third of a figure's time; the layout is fixed, in
    inches, for the same reason (a layout engine would measure every label again). Axes
    are shared and labelled on the outer panels only, with one legend: text is most of
    what a figure of 8 panels takes to draw.
    """

    def __init__(
        self,
        curves: pd.DataFrame,
        auc: pd.DataFrame,
        points: pd.DataFrame,
        choices: Sequence[str],
    ) -> None:
        self.curves, self.auc, self.points, self.choices = curves, auc, points, list(choices)
        rows, cols = _grid(len(choices))
        side, left, right, top, bottom, gap = 2.9, 0.6, 0.15, 0.6, 0.85, 0.3
        # A panel with none below it labels its own x axis: room for it above the next row.
        across = 0.75 if len(choices) % cols else 0.35
        width = left + right + cols * side + (cols - 1) * gap
        self.height = top + bottom + rows * side + (rows - 1) * across
        self.fig = Figure(figsize=(width, self.height))
        axes = self.fig.subplots(
            rows,
            cols,
            squeeze=False,
            sharex=True,
            sharey=True,
            gridspec_kw={
                "left": left / width,
                "right": 1 - right / width,
                "top": 1 - top / self.height,
                "bottom": bottom / self.height,
                "wspace": gap / side,
                "hspace": across / side,
            },
        ).ravel()
        self.axes = axes[: len(choices)]
        for ax in axes[len(choices) :]:
            ax.axis("off")
        empty = np.empty((0, 2))
        self.lines, self.stars, self.handles = [], [], {}
        for k, (ax, code) in enumerate(zip(self.axes, choices, strict=True)):
            here = points[points["class"] == code]
            readers = here[here["rater_kind"] == "reader"]
            if len(readers):
                self.handles["readers"] = ax.scatter(
                    1 - readers["specificity"],
                    readers["sensitivity"],
                    s=12,
                    color="C1",
                    alpha=0.6,
                    rasterized=len(readers) > RASTER_POINTS,
                )
            mean = here[here["rater_kind"] == "readers"]
            if len(mean):
                self.handles["readers' mean"] = ax.scatter(
                    1 - mean["specificity"],
                    mean["sensitivity"],
                    s=60,
                    marker="D",
                    color="C3",
                    edgecolor="black",
                    zorder=3,
                )
            (line,) = ax.plot([], [], color="C0", lw=1.5)
            star = ax.scatter(
                empty[:, 0], empty[:, 1], s=60, marker="*", color="C0", edgecolor="black",
                zorder=3,
            )  # fmt: skip
            self.lines.append(line)
            self.stars.append(star)
            ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
            ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), aspect="equal")
            # Tick labels on the panels with none below (subplots' sharex shows them on
            # the last row only, and a short last row leaves panels above it bare).
            below = k + cols < len(choices)
            ax.tick_params(labelbottom=not below)
            if not below:
                ax.set_xlabel("1 - specificity", fontsize=8)
            if k % cols:
                ax.tick_params(labelleft=False)
            else:
                ax.set_ylabel("sensitivity", fontsize=8)
        self.title = self.fig.suptitle("", y=1 - 0.12 / self.height)
        self.legend = None

    def draw(self, model: str) -> Figure:
        """The figure with ``model``'s curves, AUCs and top-1 points (and no other's)."""
        curves = self.curves[self.curves["model"] == model]
        auc = self.auc[self.auc["model"] == model]
        own = self.points[(self.points["rater_kind"] == "model") & (self.points["rater"] == model)]
        for ax, line, star, code in zip(self.axes, self.lines, self.stars, self.choices,
                                        strict=True):  # fmt: skip
            curve = curves[curves["class"] == code]
            line.set_data(curve["fpr"].to_numpy(), curve["tpr"].to_numpy())
            point = own[own["class"] == code]
            star.set_offsets(
                np.column_stack([1 - point["specificity"], point["sensitivity"]])
                if len(point)
                else np.empty((0, 2))
            )
            row = auc[auc["class"] == code]
            has_auc = len(row) and pd.notna(row["auc"].iloc[0])
            ax.set_title(f"{code}: AUC {row['auc'].iloc[0]:.3f}" if has_auc else code,
                         fontsize=10)  # fmt: skip
        self.title.set_text(f"One-vs-rest ROC curves: {model}")
        handles = {f"{model} ROC curve": self.lines[0], **self.handles}
        handles[f"{model} top-1"] = self.stars[0]
        if self.legend is not None:
            self.legend.remove()
        self.legend = self.fig.legend(
            list(handles.values()),
            list(handles),
            loc="lower center",
            bbox_to_anchor=(0.5, 0.05 / self.height),
            ncol=len(handles),
            fontsize=8,
        )
        return self.fig


def roc_figure(
    model: str,
    curves: pd.DataFrame,
    auc: pd.DataFrame,
    points: pd.DataFrame,
    choices: Sequence[str],
) -> Figure:
    """One model's ROC figure (:class:`RocCanvas`)."""
    return RocCanvas(curves, auc, points, choices).draw(model)


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
        1,
        len(metrics),
        figsize=(3.4 * len(metrics) + 1.5, height + 0.6),
        sharey=True,
        squeeze=False,
        layout="constrained",
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
    fig.suptitle(f"CNN minus readers, {100 * (1 - alpha):.0f}% CIs")
    fig.legend(handles, names, loc="outside lower center", ncol=len(names), fontsize=8)
    return fig


def tsne_figure(
    model: str, cases: pd.DataFrame, points: np.ndarray, choices: Sequence[str]
) -> Figure | None:
    """The 2-D t-SNE points of a model's embeddings (one row per case of ``cases``),
    coloured by the reference diagnosis; ``None`` for fewer than 5 cases."""
    n = len(points)
    if n < TSNE_MIN_POINTS:
        return None
    fig, ax = plt.subplots(figsize=(6, 5), layout="constrained")
    cmap = plt.get_cmap("tab20" if len(choices) > 10 else "tab10")
    truth = cases["truth"].to_numpy()
    many = n > RASTER_POINTS
    for j, code in enumerate(choices):
        keep = truth == code
        if keep.any():
            ax.scatter(
                points[keep, 0], points[keep, 1], s=12, color=cmap(j), label=code, rasterized=many
            )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"t-SNE of {model}'s embeddings (n={n}, perplexity {tsne_perplexity(n):.0f})")
    ax.legend(fontsize=7, markerscale=1.5, bbox_to_anchor=(1.02, 1), loc="upper left")
    return fig


def _font(size: int):
    """DejaVu Sans, the font of the other figures (matplotlib ships it), for Pillow."""
    from matplotlib import font_manager
    from PIL import ImageFont

    return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)


def _fit(text: str, font, width: int) -> str:
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "\u2026") > width:
        text = text[:-1]
    return text + "\u2026"


def _thumbnail(source) -> object | None:
    """The overlay as an RGB thumbnail of at most THUMB_PX pixels a side; None when it
    cannot be read."""
    from PIL import Image

    try:
        if hasattr(source, "seek"):
            source.seek(0)
        with Image.open(source) as im:
            im.draft("RGB", (THUMB_PX, THUMB_PX))  # JPEG: decode at a reduced size
            thumb = im.convert("RGB")
            thumb.thumbnail((THUMB_PX, THUMB_PX), Image.Resampling.LANCZOS)
            return thumb
    except (OSError, ValueError, TypeError):
        return None


def gradcam_gallery(items: list[dict], out_dir: Path, stem: str) -> Written | None:
    """One JPEG grid of Grad-CAM thumbnails, ``<stem>.jpg``: a row of up to
    :data:`GALLERY_COLUMNS` per model under the model's name, each with its case and
    ``truth -> answer`` (✗ when wrong). ``items`` are dicts with ``image`` (a path or a
    file object) or ``path``, and model, case, truth, answer, and optionally ``url`` (the
    full overlay): each thumbnail with a ``url`` is a clickable :class:`Area` of the
    page's image. ``None`` when none can be read."""
    from PIL import Image, ImageDraw

    read = []
    for item in items:
        source = item.get("image") or item.get("path")
        thumb = _thumbnail(source) if source is not None else None
        if thumb is not None:
            read.append((item, thumb))
    if not read:
        return None
    title_font, label_font, caption_font = _font(14), _font(12), _font(10)
    pad, caption, heading, header = 6, 28, 20, 26
    cell_w, cell_h = THUMB_PX + pad, THUMB_PX + caption + pad
    models = list(dict.fromkeys(str(item.get("model", "")) for item, _ in read))
    groups = {m: [(i, t) for i, t in read if str(i.get("model", "")) == m] for m in models}
    rows = {m: -(-len(g) // GALLERY_COLUMNS) for m, g in groups.items()}
    width = pad + GALLERY_COLUMNS * cell_w
    height = header + sum(heading + rows[m] * cell_h for m in models) + pad
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    title = "Grad-CAM saliency (\u2717: the answer was wrong)"
    draw.text((pad, 5), title, font=title_font, fill="black")
    areas = []
    y = header
    for model in models:
        heading_text = _fit(model, label_font, width - 2 * pad)
        draw.text((pad, y + 3), heading_text, font=label_font, fill="black")
        y += heading
        for k, (item, thumb) in enumerate(groups[model]):
            left = pad + (k % GALLERY_COLUMNS) * cell_w
            top = y + (k // GALLERY_COLUMNS) * cell_h
            truth, answer = item.get("truth", "?"), item.get("answer", "?")
            wrong = truth != answer
            case = _fit(str(item.get("case", "")), caption_font, THUMB_PX)
            said = f"{truth} \u2192 {answer}" + (" \u2717" if wrong else "")
            said = _fit(said, caption_font, THUMB_PX)
            draw.text((left, top), case, font=caption_font, fill="#444444")
            draw.text((left, top + 13), said, font=caption_font,
                      fill="#b00020" if wrong else "black")  # fmt: skip
            image_top = top + caption
            canvas.paste(thumb, (left, image_top))
            if item.get("url"):
                areas.append(
                    Area(
                        box=(left, image_top, left + thumb.width, image_top + thumb.height),
                        href=str(item["url"]),
                        title=f"{model} {item.get('case', '')}: truth {truth}, said {answer}",
                    )
                )
        y += rows[model] * cell_h
    path = Path(out_dir) / f"{stem}.jpg"
    canvas.save(path, format="JPEG", quality=GALLERY_QUALITY, optimize=True)
    return Written(paths=[path], areas=areas, size=canvas.size)


Projection = Callable[[int], tuple[pd.DataFrame, np.ndarray] | None]


@dataclass(frozen=True)
class FigureJob:
    """One figure of a report: its heading, file stem and caption, how to write it
    (``write(out_dir, stem)`` returns None when there is nothing to draw) and the key of
    the page section it illustrates (``None``: with the other figures after the tables)."""

    title: str
    stem: str
    caption: str
    write: Callable[[Path, str], Written | None]
    section: str | None = None


def _saved(draw: Callable[[], Figure | None]) -> Callable[[Path, str], Written | None]:
    """A job's ``write`` for a matplotlib figure: draw it, then :func:`save` it."""

    def write(out_dir: Path, stem: str) -> Written | None:
        fig = draw()
        return None if fig is None else Written(paths=save(fig, out_dir, stem))

    return write


def _fitted(cases: pd.DataFrame, matrix: np.ndarray) -> Projection:
    """A projection that fits the t-SNE now, for embeddings that come without stored
    points (a report from files, the benchmark)."""

    def project(seed: int):
        if matrix.shape[0] < TSNE_MIN_POINTS:
            return None
        return cases, tsne_points(matrix, seed=seed)

    return project


def gain_figure(gains: pd.DataFrame, fit: pd.DataFrame, a: str, b: str) -> Figure | None:
    """Each reader's gain in top-1 accuracy (condition b - a) against their years in
    dermatology, one marker per level, with the least-squares line of gain on years
    and its pointwise confidence band (``gain_fit``). ``None`` without years."""
    from analysis.stats.conditions import LEVEL_ORDER

    points = gains[(gains["condition_a"] == a) & (gains["condition_b"] == b)]
    years = pd.to_numeric(points["years"], errors="coerce")
    points = points.assign(years=years)[years.notna()]
    if points.empty:
        return None
    line = fit[(fit["condition_a"] == a) & (fit["condition_b"] == b)]
    fig, ax = plt.subplots(figsize=(6.0, 4.2), layout="constrained")
    if len(line):
        x = line["years"].to_numpy(dtype=float)
        ax.fill_between(
            x,
            line["ci_low"].to_numpy(dtype=float),
            line["ci_high"].to_numpy(dtype=float),
            color="grey",
            alpha=0.25,
            lw=0,
            label="95% CI of the line",
        )
        ax.plot(x, line["fit"].to_numpy(dtype=float), color="black", lw=1.2, label="gain ~ years")
    levels = points["level"].astype("string").fillna("unknown")
    present = set(levels)
    order = [v for v in LEVEL_ORDER if v in present] + sorted(present - set(LEVEL_ORDER))
    for k, level in enumerate(order):
        mine = points[(levels == level).to_numpy()]
        ax.plot(
            mine["years"].to_numpy(dtype=float),
            mine["gain"].to_numpy(dtype=float),
            "os^Dv<>p"[k % 8],
            ms=6,
            ls="none",
            color=f"C{k}",
            label=str(level).replace("_", " "),
        )
    ax.axhline(0, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("years in dermatology")
    ax.set_ylabel(f"gain in top-1 accuracy ({b} - {a})")
    ax.set_title(f"Gain with {b} over {a}, by experience")
    ax.legend(fontsize=8, loc="best")
    return fig


def _pair(frame: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    return frame[(frame["condition_a"] == a) & (frame["condition_b"] == b)]


def _interval(d: float, lo: float, hi: float) -> str:
    """``+6.0 (-1.5 to +13.5)`` with one decimal, signed, the minus sign of the tick
    labels (U+2212) for the hyphen and no negative zero."""
    d, lo, hi = (round(v, 1) + 0.0 for v in (d, lo, hi))
    return f"{d:+.1f} ({lo:+.1f} to {hi:+.1f})".replace("-", "\u2212")


def _confidence(alpha: float) -> str:
    return f"{100 * (1 - alpha):.0f}%"


def conditions_figure(
    condition_or: pd.DataFrame,
    bootstrap: pd.DataFrame,
    a: str,
    b: str,
    choices: Sequence[str],
    *,
    alpha: float = 0.05,
) -> Figure | None:
    """Forest plot of condition b - a in the readers' mean, in percentage points: top-1
    accuracy, then each class's sensitivity, then each class's specificity (one-vs-rest),
    each row with the Obuchowski-Rockette RRRC difference and CI (``condition_or``) and
    the paired bootstrap's percentile CI of the same difference (``condition_bootstrap``)
    beside it; the RRRC numbers are written on the right. ``None`` with neither."""
    ors = _pair(condition_or, a, b)
    methods = [
        ("Obuchowski-Rockette, random readers and cases (RRRC)",
         ors[ors["analysis"] == "rrrc"], "o", BLUE),
        ("paired bootstrap over readers and cases", _pair(bootstrap, a, b), "s", ORANGE),
    ]  # fmt: skip
    methods = [m for m in methods if len(m[1].dropna(subset=["difference"]))]
    if not methods:
        return None
    keys = [("top1_accuracy", "all")]
    keys += [(metric, c) for metric in ("sensitivity", "specificity") for c in choices]
    present = set().union(
        *(zip(rows["metric"], rows["class"], strict=True) for _, rows, _, _ in methods)
    )
    keys = [k for k in keys if k in present]
    labels = ["top-1 accuracy" if m == "top1_accuracy" else f"{m}: {c}" for m, c in keys]
    fig, ax = plt.subplots(figsize=(7.6, 0.34 * len(keys) + 2.2), layout="constrained")
    offsets = np.linspace(-0.15, 0.15, len(methods)) if len(methods) > 1 else [0.0]
    for (name, rows, marker, colour), offset in zip(methods, offsets, strict=True):
        rows = rows.set_index(["metric", "class"]).reindex(keys)
        y = np.arange(len(keys)) + offset
        d, lo, hi = (
            100 * rows[c].to_numpy(dtype=float) for c in ("difference", "ci_low", "ci_high")
        )
        # The interval as a line of its own: a percentile bootstrap interval need not
        # contain the point estimate, which error bars (offsets from it) cannot draw.
        ok = np.isfinite(lo) & np.isfinite(hi)
        ax.hlines(y[ok], lo[ok], hi[ok], color=colour, lw=1.4)
        ax.plot(np.r_[lo[ok], hi[ok]], np.r_[y[ok], y[ok]], "|", ms=6, color=colour)
        ax.plot(d, y, marker, ms=5, color=colour, label=name, ls="none")
    ax.axvline(0, color="black", lw=0.9)
    metric_of = [m for m, _ in keys]
    for i in range(1, len(keys)):
        if metric_of[i] != metric_of[i - 1]:
            ax.axhline(i - 0.5, color="lightgrey", lw=0.8)
    ax.set_yticks(range(len(keys)), labels)
    ax.set_ylim(len(keys) - 0.5, -0.5)  # top-1 accuracy at the top
    ax.set_xlabel(
        f"difference in percentage points ({b} \u2212 {a})\n"
        f"\u2190 better in {a}          better in {b} \u2192"
    )
    # The headline method's numbers, on a twin axis so the layout makes room for them.
    name, rows, _, _ = methods[0]
    rows = rows.set_index(["metric", "class"]).reindex(keys)
    right = ax.twinx()
    right.set_ylim(ax.get_ylim())
    right.set_yticks(
        range(len(keys)),
        [
            "\u2013" if not np.isfinite(d) else _interval(d, lo, hi)
            for d, lo, hi in 100 * rows[["difference", "ci_low", "ci_high"]].to_numpy(dtype=float)
        ],
        fontsize=8,
    )
    shown = "RRRC" if name.endswith("(RRRC)") else "bootstrap"
    right.set_ylabel(f"{shown} difference ({_confidence(alpha)} CI)", fontsize=8)
    ax.set_title(
        f"Readers in {b} versus {a}: differences with {_confidence(alpha)} CIs", fontsize=11
    )
    fig.legend(loc="outside lower center", ncol=1, fontsize=8)
    return fig


def switching_figure(
    switching: pd.DataFrame, a: str, b: str, choices: Sequence[str]
) -> Figure | None:
    """One horizontal bar per reference diagnosis (and one for all cases, on top) of the
    reads of pair (a, b), split by outcome (:data:`SWITCH_COLOURS`, the order of the
    switching table) in shares of the bar's reads, so each bar sums to 1. ``None``
    without reads."""
    from analysis.report.wording import OUTCOME_LABELS

    table = _pair(switching, a, b)
    table = table[table["reads"] > 0]
    present = set(zip(table["grouping"], table["group"], strict=True))
    groups = [g for g in [("overall", "all"), *(("class", c) for c in choices)] if g in present]
    if not groups:
        return None
    shares = table.pivot_table(
        index=["grouping", "group"], columns="outcome", values="proportion", aggfunc="first"
    ).reindex(index=pd.MultiIndex.from_tuples(groups), columns=list(SWITCH_COLOURS))
    shares = shares.fillna(0.0)
    reads = table.groupby(["grouping", "group"])["reads"].first()
    labels = [
        f"{'all cases' if grouping == 'overall' else group} ({int(reads[(grouping, group)])} reads)"
        for grouping, group in groups
    ]
    fig, ax = plt.subplots(figsize=(7.6, 0.42 * len(groups) + 2.3), layout="constrained")
    y = np.arange(len(groups))
    left = np.zeros(len(groups))
    for outcome, (colour, ink) in SWITCH_COLOURS.items():
        share = shares[outcome].to_numpy(dtype=float)
        ax.barh(
            y, share, left=left, height=0.7, color=colour, edgecolor="white", lw=0.6,
            label=OUTCOME_LABELS[outcome],
        )  # fmt: skip
        for k in np.flatnonzero(share >= SHARE_LABEL_MIN):
            ax.text(
                left[k] + share[k] / 2, y[k], f"{100 * share[k]:.0f}%", ha="center",
                va="center", fontsize=8, color=ink,
            )  # fmt: skip
        left += share
    if len(groups) > 1:
        ax.axhline(0.5, color="black", lw=0.8)
    ax.set_yticks(y, labels)
    ax.set_ylim(len(groups) - 0.5, -0.6)
    ax.set_xlim(0, 1)
    ax.xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(xmax=1))
    ax.set_xlabel(f"share of the reads: the answer in {a}, then in {b}")
    ax.set_title(f"How the answers changed from {a} to {b}, by reference diagnosis", fontsize=11)
    fig.legend(loc="outside lower center", ncol=3, fontsize=8)
    return fig


def following_figure(
    following: pd.DataFrame, a: str, b: str, *, alpha: float = 0.05
) -> Figure | None:
    """Of the reads of pair (a, b) whose answer in a differed from the CNN's, the share
    that gave the CNN's answer in b (``follow_rate``), when the CNN was right and when it
    was wrong, for all readers and per level (most junior first): grouped bars with
    ``followed / disagreeing`` written on each and a Wilson interval of the proportion
    (which treats the reads as independent). ``None`` without such reads."""
    from statsmodels.stats.proportion import proportion_confint

    from analysis.stats.conditions import LEVEL_ORDER

    table = _pair(following, a, b)
    levels = table.loc[table["grouping"] == "level", "group"].astype(str).unique()
    order = [v for v in LEVEL_ORDER if v in set(levels)] + sorted(set(levels) - set(LEVEL_ORDER))
    groups = [("overall", "all"), *(("level", v) for v in order)]
    if not (table["disagreeing"] > 0).any():
        return None
    fig, ax = plt.subplots(figsize=(max(6.4, 1.35 * len(groups) + 2.5), 4.8), layout="constrained")
    x = np.arange(len(groups))
    width = 0.38
    bars = ((True, -0.2, BLUE, "the CNN was right"), (False, 0.2, VERMILLION, "the CNN was wrong"))
    for right, shift, colour, name in bars:
        rows = table[table["cnn_correct"].astype(bool) == right]
        rows = rows.assign(group=rows["group"].astype(str)).set_index(["grouping", "group"])
        rows = rows.reindex(pd.MultiIndex.from_tuples(groups))
        followed = rows["followed"].fillna(0).to_numpy(dtype=float)
        asked = rows["disagreeing"].fillna(0).to_numpy(dtype=float)
        some = asked > 0
        rate = np.where(some, followed / np.where(some, asked, 1), np.nan)
        lo, hi = np.full(len(groups), np.nan), np.full(len(groups), np.nan)
        if some.any():
            lo[some], hi[some] = proportion_confint(
                followed[some], asked[some], alpha=alpha, method="wilson"
            )
        ax.bar(x[some] + shift, rate[some], width, color=colour, label=name)
        ax.errorbar(
            x[some] + shift, rate[some], yerr=[rate[some] - lo[some], hi[some] - rate[some]],
            fmt="none", ecolor="black", elinewidth=0.9, capsize=3,
        )  # fmt: skip
        for k in range(len(groups)):
            top = hi[k] if some[k] else 0.0
            text = f"{int(followed[k])}/{int(asked[k])}" if some[k] else "no reads"
            ax.text(x[k] + shift, top + 0.02, text, ha="center", va="bottom", fontsize=8)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(x, ["all readers", *(v.replace("_", " ") for v in order)])
    ax.set_ylim(0, 1.12)
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(xmax=1))
    ax.set_ylabel(f"took the CNN's answer in {b}\n(share of the reads that disagreed with it)")
    if order:
        ax.set_xlabel("readers: all, then by level")
    ax.set_title(
        f"Following the CNN in {b}\nreads whose answer in {a} differed from the CNN's",
        fontsize=11,
    )
    fig.legend(loc="outside lower center", ncol=2, fontsize=8)
    return fig


def _table_jobs(
    tables: AnalysisTables, *, condition: str | None = None, models: bool = True
) -> list[FigureJob]:
    """The confusion matrices, ROC figures and forest plot of one set of tables; with a
    ``condition``, of that reading condition (its name in each stem and title), the
    models' confusion matrices only with ``models`` (they do not depend on it)."""
    tables = tables.for_subgroup()
    summary = tables.summary
    choices = summary.choices
    jobs = []

    def named(name: str | None) -> str | None:
        if condition is None:
            return name
        return condition if name is None else f"{condition}_{name}"

    where = "" if condition is None else f", condition {condition}"
    raters = list(pd.unique(tables.confusion["rater"])) if len(tables.confusion) else []
    for rater in raters:
        if rater != "readers" and not models:
            continue
        title = "Readers (pooled)" if rater == "readers" else f"Model {rater}"
        jobs.append(
            FigureJob(
                f"Confusion matrix: {title}" + (where if rater == "readers" else ""),
                figure_stem("confusion", named(rater) if rater == "readers" else rater),
                "Rows: reference diagnosis; columns: answer; colour: fraction of the row.",
                _saved(lambda rater=rater: confusion_figure(tables.confusion, rater, choices)),
            )
        )
    if len(tables.auc):
        canvas: list[RocCanvas] = []  # built by the first ROC figure, for all of them

        def roc(model: str) -> Figure:
            if not canvas:
                points = operating_points(tables.per_class)
                canvas.append(RocCanvas(tables.roc, tables.auc, points, choices))
            return canvas[0].draw(model)

        for model in summary.models:
            jobs.append(
                FigureJob(
                    f"ROC curves: {model}{where}",
                    figure_stem("roc", named(model)),
                    "One-vs-rest ROC curve of the model per class (its AUC above each "
                    "panel); dots: each reader's (1 - specificity, sensitivity); diamond: "
                    "the readers' mean; star: the model's top-1 answer.",
                    _saved(lambda model=model: roc(model)),
                )
            )
    if len(tables.comparisons):
        jobs.append(
            FigureJob(
                f"CNN minus readers{where}",
                figure_stem("forest", named(None)),
                "Differences model - readers with their confidence intervals, by method; "
                "per-class rows are not adjusted for multiplicity here (see p_adjusted).",
                _saved(lambda: forest_figure(tables.comparisons, alpha=float(summary.alpha))),
            )
        )
    return jobs


def _condition_jobs(tables: AnalysisTables) -> list[FigureJob]:
    """The figures of each pair of reading conditions (a, b), each beside its section:
    condition b - a by both methods; where b shows the CNN, how the answers changed and
    how often readers took the CNN's answer; the gain by experience."""
    compared = tables.conditions
    alpha = float(tables.summary.alpha)
    choices = tables.summary.choices
    ci = _confidence(alpha)
    crossover = (
        " In a crossover the two answers come from separate sessions after a washout."
        if compared.design == "crossover"
        else ""
    )
    jobs = []
    pairs = compared.condition_pairs[["condition_a", "condition_b"]].drop_duplicates()
    switched = set(
        zip(compared.switching["condition_a"], compared.switching["condition_b"], strict=True)
    )
    for a, b in pairs.itertuples(index=False):
        jobs.append(
            FigureJob(
                f"Condition versus condition: {b} minus {a}",
                figure_stem("conditions", f"{a}_{b}"),
                f"Each row: the readers' mean in {b} minus in {a}, in percentage points, with "
                f"its {ci} CI by the Obuchowski-Rockette analysis (circle, random readers and "
                "cases; its numbers on the right) and by the paired bootstrap (square); an "
                "interval clear of the line at 0 is a change beyond chance. Per-class rows "
                "are not adjusted for multiplicity here (see p_adjusted).",
                _saved(
                    lambda a=a, b=b: conditions_figure(
                        compared.condition_or,
                        compared.condition_bootstrap,
                        a,
                        b,
                        choices,
                        alpha=alpha,
                    )
                ),
                section="condition_bootstrap",
            )
        )
        if (a, b) in switched:
            jobs.append(
                FigureJob(
                    f"How answers changed with the CNN: {a} to {b}",
                    figure_stem("switching", f"{a}_{b}"),
                    f"Each bar splits the reads of one reference diagnosis (top: all cases) "
                    f"by how the answer in {a} became the answer in {b}: kept right, right to "
                    "wrong (the CNN misled), wrong to right (the CNN helped), kept wrong, or "
                    "another wrong answer." + crossover,
                    _saved(lambda a=a, b=b: switching_figure(compared.switching, a, b, choices)),
                    section="switching",
                )
            )
            jobs.append(
                FigureJob(
                    f"Following the CNN: {b}",
                    figure_stem("following", f"{a}_{b}"),
                    f"Of the reads whose answer in {a} differed from the CNN's, the share "
                    f"that gave the CNN's answer in {b}, when the CNN was right and when it "
                    "was wrong, for all readers and per level; on each bar: reads that took "
                    f"it / reads that differed; whiskers: {ci} Wilson intervals, which treat "
                    "the reads as independent and so understate the uncertainty." + crossover,
                    _saved(
                        lambda a=a, b=b: following_figure(compared.cnn_following, a, b, alpha=alpha)
                    ),
                    section="cnn_following",
                )
            )
        jobs.append(
            FigureJob(
                f"Gain by experience: {b} over {a}",
                figure_stem("gain", f"{a}_{b}"),
                f"Each dot is a reader: their top-1 accuracy in {b} minus in {a}, "
                "against years in dermatology, marked by level; line and band: the "
                "least-squares line of gain on years and its 95% confidence band. "
                "Dots above the dashed line gained.",
                _saved(
                    lambda a=a, b=b: gain_figure(compared.reader_gains, compared.gain_fit, a, b)
                ),
                section="gain_regression",
            )
        )
    return jobs


def figure_jobs(
    tables: AnalysisTables,
    *,
    embeddings: dict[str, tuple[pd.DataFrame, np.ndarray]] | None = None,
    projections: dict[str, Projection] | None = None,
    gradcams: list[dict] | None = None,
) -> list[FigureJob]:
    """Every figure of a report, in page order: a confusion matrix per rater, ROC curves
    per model (from ``tables.roc``), the forest plot of the comparisons, a t-SNE per
    model (``projections``: ``{model: seed -> (cases, n x 2 points)}``, stored points;
    ``embeddings``: ``{model: (cases, n x d)}``, fitted here) and the Grad-CAM gallery.
    With several reading conditions, the readers' confusion matrix, the ROC figures and
    the forest plot of each condition, then the figures of each comparison
    (:func:`_condition_jobs`).
    Figures show all readers; the subgroups are in the tables."""
    compared = tables.conditions
    if compared is None:
        jobs = _table_jobs(tables)
    else:
        jobs = []
        for i, (code, part) in enumerate(compared.by_condition.items()):
            jobs += _table_jobs(part, condition=code, models=i == 0)
        jobs += _condition_jobs(tables)
    summary = tables.summary
    choices = summary.choices
    sources = {m: _fitted(cases, matrix) for m, (cases, matrix) in (embeddings or {}).items()}
    sources.update(projections or {})
    for model, project in sources.items():

        def draw(model=model, project=project):
            found = project(int(summary.seed))
            return None if found is None else tsne_figure(model, *found, choices)

        jobs.append(
            FigureJob(
                f"t-SNE of the embeddings: {model}",
                figure_stem("tsne", model),
                "Last hidden layer, two-dimensional t-SNE, coloured by the reference diagnosis.",
                _saved(draw),
            )
        )
    if gradcams:
        linked = any(item.get("url") for item in gradcams)
        jobs.append(
            FigureJob(
                "Grad-CAM saliency",
                "gradcam",
                "Regions that drove the model's top-1 answer (\u2717: the answer was wrong)."
                + (
                    " Each thumbnail opens its full overlay on the platform (study admins)."
                    if linked
                    else ""
                ),
                lambda out_dir, stem: gradcam_gallery(gradcams, out_dir, stem),
            )
        )
    return jobs
