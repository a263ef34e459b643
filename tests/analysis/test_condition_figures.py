"""The figures of several reading conditions: condition vs condition (OR and bootstrap),
how the answers changed with the CNN, and following the CNN; drawn once per format,
beside their sections, and absent from a one-condition report."""

from __future__ import annotations

from collections import defaultdict

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from analysis.report import figures
from analysis.report.files import is_report_file_name
from analysis.report.writer import ReportMeta, write_report
from analysis.stats import analyze_tables
from tests.analysis.factories import condition_tables

N_BOOT = 40
KINDS = ("conditions", "switching", "following")
STEMS = [f"{kind}_unaided_aided" for kind in KINDS]
# Each figure's section on the page: it comes after this heading and before the next.
SECTION = {"conditions": "condition_bootstrap", "switching": "switching",
           "following": "cnn_following"}  # fmt: skip


def tables_of(design: str):
    if design == "sequential":
        answers, predictions = condition_tables(n_readers=5, n_cases=16, seed=1)
    else:
        answers, predictions = condition_tables(
            design="crossover", n_readers=6, n_cases=16, seed=2, unfinished=1
        )
    return analyze_tables(answers, predictions, None, n_bootstrap=N_BOOT, readers="all")


@pytest.fixture(scope="module", params=["sequential", "crossover"])
def report(request, tmp_path_factory):
    tables = tables_of(request.param)
    out = tmp_path_factory.mktemp(request.param)
    return tables, write_report(tables, out, ReportMeta(title=f"{request.param} study"))


@pytest.fixture(scope="module")
def sequential():
    return tables_of("sequential")


def test_each_comparison_figure_is_a_valid_png_and_svg(report):
    _, files = report
    for stem in STEMS:
        png, svg = files.out_dir / f"{stem}.png", files.out_dir / f"{stem}.svg"
        assert png in files.figures and svg in files.figures, stem
        assert is_report_file_name(png.name) and is_report_file_name(svg.name)
        with Image.open(png) as image:
            image.verify()
            assert image.format == "PNG" and min(image.size) > 200, stem
        assert b"<svg" in svg.read_bytes()[:2000], stem
    assert {f"figures {kind}" for kind in KINDS} <= set(files.timings)


def test_page_shows_each_figure_beside_its_section(report):
    _, files = report
    html = files.html.read_text()
    pngs = [p for p in files.figures if p.suffix == ".png"]
    assert html.count("data:image/png;base64,") == len(pngs)
    headings = [part.split('"')[0] for part in html.split('<h2 id="')[1:]]
    for kind, section in SECTION.items():
        stem = f"{kind}_unaided_aided"
        assert f"(Vector version: {stem}.svg)" in html
        at = html.index(f'id="fig-{stem}"')
        start = html.index(f'<h2 id="{section}"')
        following = headings[headings.index(section) + 1]
        assert start < at < html.index(f'<h2 id="{following}"'), kind


def bars_by_row(ax) -> dict[float, list[float]]:
    rows = defaultdict(list)
    for patch in ax.patches:
        rows[round(patch.get_y() + patch.get_height() / 2, 6)].append(patch.get_width())
    return rows


def test_switching_bars_are_each_rows_shares_and_sum_to_one(sequential):
    compared = sequential.conditions
    table = compared.switching
    fig = figures.switching_figure(table, "unaided", "aided", sequential.summary.choices)
    ax = fig.axes[0]
    rows = bars_by_row(ax)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    plt.close(fig)
    assert labels[0].startswith("all cases") and len(labels) == 1 + len(sequential.summary.choices)
    assert len(rows) == len(labels)
    for widths in rows.values():
        assert sum(widths) == pytest.approx(1.0)
    # The top bar (y = 0) is all cases: its widths are count / reads of each outcome.
    overall = table[table["grouping"] == "overall"]
    expected = (overall["count"] / overall["reads"]).to_numpy(dtype=float)
    assert np.allclose(rows[0.0], expected)


def test_conditions_figure_draws_both_methods_intervals_in_percentage_points(sequential):
    compared = sequential.conditions
    fig = figures.conditions_figure(
        compared.condition_or, compared.condition_bootstrap, "unaided", "aided",
        sequential.summary.choices,
    )  # fmt: skip
    ax = fig.axes[0]
    lines = [c for c in ax.collections if len(c.get_segments())]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    zero_line = any(list(line.get_xdata()) == [0, 0] for line in ax.get_lines())
    plt.close(fig)
    assert labels[0] == "top-1 accuracy" and labels[1].startswith("sensitivity")
    rrrc = compared.condition_or[compared.condition_or["analysis"] == "rrrc"]
    methods = [rrrc, compared.condition_bootstrap]
    assert len(lines) == 2  # one set of intervals per method, the OR's first
    for drawn, table in zip(lines, methods, strict=True):
        row = table[table["metric"] == "top1_accuracy"].iloc[0]
        (lo, _), (hi, _) = drawn.get_segments()[0]  # the first row: top-1 accuracy
        assert (lo, hi) == pytest.approx((100 * row["ci_low"], 100 * row["ci_high"]))
    assert zero_line  # the reference line at 0


def test_following_figure_writes_the_counts_on_its_bars(sequential):
    following = sequential.conditions.cnn_following
    fig = figures.following_figure(following, "unaided", "aided")
    ax = fig.axes[0]
    texts = {t.get_text() for t in ax.texts}
    heights = sorted(p.get_height() for p in ax.patches)
    plt.close(fig)
    shown = following[following["grouping"].isin(["overall", "level"])]
    shown = shown[shown["disagreeing"] > 0]
    counts = zip(shown["followed"], shown["disagreeing"], strict=True)
    assert {f"{int(f)}/{int(d)}" for f, d in counts} <= texts
    assert heights == pytest.approx(sorted(shown["follow_rate"].astype(float)))


def test_one_condition_report_draws_none_of_the_comparison_figures(tmp_path):
    answers, predictions = condition_tables(n_readers=4, n_cases=12)
    one = answers[answers["condition"] == "unaided"].drop(columns=["condition"])
    tables = analyze_tables(one, predictions, None, n_bootstrap=N_BOOT)
    files = write_report(tables, tmp_path, ReportMeta(title="one condition"))
    names = {p.name for p in tmp_path.iterdir()}
    assert not any(n.startswith((*(f"{k}_" for k in KINDS), "gain_")) for n in names)
    html = files.html.read_text()
    assert not any(f'id="fig-{k}_' in html for k in KINDS)
    assert '<h2 id="figures">Figures</h2>' in html  # its figures where they always were
    assert 'id="fig-forest"' in html.split('<h2 id="figures">')[1]
