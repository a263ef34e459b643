"""The report writer and the loaders: files, columns, figures, flags and safe names."""

from __future__ import annotations

import io
import itertools
import json
import re
from html import unescape

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from analysis.loaders import file_tables, study_report_meta, study_tables
from analysis.report import (
    REPORT_FILES,
    ReportMeta,
    figures,
    is_report_file_name,
    software_versions,
    write_report,
)
from analysis.report.files import safe_name
from analysis.stats import InputError, analyze_tables
from analysis.stats.pipeline import PER_CLASS_COLUMNS
from tests.analysis.factories import CHOICES, synthetic_tables


def png_bytes(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """One full report on 6 readers x 24 cases x 2 models, with embeddings and Grad-CAMs."""
    answers, predictions = synthetic_tables()
    tables = analyze_tables(answers, predictions, CHOICES, seed=3, n_bootstrap=50)
    rng = np.random.default_rng(1)
    cases = predictions[predictions["model"] == "cnn-0"][["case", "truth"]].reset_index(drop=True)
    out = tmp_path_factory.mktemp("report")
    cams = []
    for k in range(3):
        path = out.parent / f"cam{k}.png"
        path.write_bytes(png_bytes(k))
        cams.append(
            {
                "model": "cnn-0",
                "case": f"case{k:03d}",
                "truth": "MN",
                "answer": "SK",
                "path": str(path),
                "url": f"/inference/predictions/{k + 1}/gradcam.png",
            }
        )
    files = write_report(
        tables,
        out,
        ReportMeta(
            title="Synthetic <study> & report",
            details={
                "synthetic": True,
                "source": "database",
                "study": "synth",
                "models": [
                    {"name": "cnn-0", "arch": "efficientnet_b4", "trained": False},
                    {"name": "cnn-1", "arch": "resnet101", "trained": True},
                ],
            },
            embeddings={"cnn-0": (cases, rng.normal(size=(len(cases), 8)).astype(np.float32))},
            gradcams=cams,
        ),
    )
    return files, tables


def test_every_table_is_written_as_csv_and_excel_sheet(written):
    files, tables = written
    for name in REPORT_FILES:
        assert (files.out_dir / name).is_file(), name
    per_class = pd.read_csv(files.out_dir / "per_class.csv")
    assert list(per_class.columns) == PER_CLASS_COLUMNS
    assert list(pd.read_csv(files.out_dir / "comparisons.csv").columns) == list(
        tables.comparisons.columns
    )
    sheets = pd.read_excel(files.workbook, sheet_name=None)
    assert {"per_class", "comparisons", "agreement", "auc", "auc_tests"} <= set(sheets)
    assert len(sheets["per_class"]) == len(tables.per_class)


def test_per_class_has_each_reader_the_readers_group_and_each_model(written):
    files, _ = written
    per_class = pd.read_csv(files.out_dir / "per_class.csv")
    kinds = per_class.groupby("rater")["rater_kind"].first()
    # R5 answered 20 of 24 cases: left out by default (finished readers only)
    assert {f"R{r}" for r in range(5)} == set(kinds[kinds == "reader"].index)
    assert kinds["readers"] == "readers"
    assert kinds["cnn-0"] == kinds["cnn-1"] == "model"
    assert set(per_class["class"]) == {*CHOICES, "all"}


def test_figures_exist_as_png_and_svg_and_the_gallery_as_one_jpeg(written):
    files, _ = written
    stems = {p.stem for p in files.figures}
    assert {
        "confusion_readers",
        "confusion_cnn-0",
        "confusion_cnn-1",
        "roc_cnn-0",
        "roc_cnn-1",
        "forest",
        "tsne_cnn-0",
        "gradcam",
    } <= stems
    for stem in stems - {"gradcam"}:
        assert (files.out_dir / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert b"<svg" in (files.out_dir / f"{stem}.svg").read_bytes()[:2000]
    assert [p.name for p in files.figures if p.stem == "gradcam"] == ["gradcam.jpg"]
    assert (files.out_dir / "gradcam.jpg").read_bytes()[:3] == b"\xff\xd8\xff"
    for path in files.paths():
        assert is_report_file_name(path.name), path.name
    kinds = {"confusion", "roc", "forest", "tsne", "gradcam"}
    assert set(files.timings) == {"csv", "workbook", "html", *(f"figures {k}" for k in kinds)}
    assert all(seconds > 0 for seconds in files.timings.values())


def test_html_is_self_contained_and_flags_untrained_and_synthetic(written):
    files, _ = written
    html = files.html.read_text()
    assert "Synthetic &lt;study&gt; &amp; report" in html  # the title is escaped
    assert "UNTRAINED" in html and "cnn-0" in html
    assert "Synthetic study" in html
    pngs = [p for p in files.figures if p.suffix == ".png"]
    assert html.count("data:image/png;base64,") == len(pngs) == len(files.figures) // 2
    assert html.count("data:image/jpeg;base64,") == 1  # the gallery
    assert 'src="http' not in html and "<script" not in html
    for phrase in (
        "Fleiss\u2013Cohen\u2013Everitt",
        "Holm",
        "paired bootstrap",
        "1T-RRRC",
        "Hillis 2007",
        "DeLong",
        "Fleiss' kappa",
        "SE<sub>readers</sub>",
    ):
        assert phrase in html, phrase
    for name, version in software_versions().items():
        assert f"<th>{name}</th><td>{version}</td>" in html


def test_summary_json_is_strict_and_lists_files(written):
    files, _ = written
    summary = json.loads(files.summary.read_text(), parse_constant=pytest.fail)
    assert summary["n_readers"] == 5 and summary["n_models"] == 2
    assert summary["readers"]["n_left_out"] == 1 and summary["readers"]["left_out"] == ["R5"]
    assert summary["facts"]["untrained_models"] == ["cnn-0"]
    assert summary["facts"]["cases_per_class"] == [{"class": c, "n": 6} for c in CHOICES]
    assert set(summary["files"]) == set(files.names())


def test_a_report_without_predictions_has_reader_tables_only(tmp_path):
    answers, _ = synthetic_tables(n_readers=3, n_cases=8)
    tables = analyze_tables(answers, None, CHOICES, n_bootstrap=10)
    files = write_report(tables, tmp_path, ReportMeta(title="Readers only"))
    assert {p.stem for p in files.figures} == {"confusion_readers"}
    assert pd.read_csv(tmp_path / "comparisons.csv").empty
    assert "No model predictions." in files.html.read_text()


def test_a_report_without_answers_says_there_are_no_readers(tmp_path):
    _, predictions = synthetic_tables(n_cases=8, n_models=2)
    tables = analyze_tables(None, predictions, CHOICES, n_bootstrap=10, seed=5)
    files = write_report(tables, tmp_path, ReportMeta(title="Models only"))
    html = unescape(files.html.read_text())
    assert (
        "No reader answers yet: the readers' tables, the comparisons of the models with the "
        "readers and the agreement among readers are omitted; only the models' tables are shown."
    ) in html
    header = html.split("<h2>Study</h2>")[0]
    assert "seed 5" in header and "bootstrap resamples" not in header
    assert "Holm adjustment" in header  # the DeLong tests of the two models are adjusted
    assert 'id="comparisons"' not in html and 'id="readers"' not in html
    assert "paired bootstrap" not in html and "1T-RRRC" not in html
    assert {p.stem for p in files.figures} == {
        "confusion_cnn-0",
        "confusion_cnn-1",
        "roc_cnn-0",
        "roc_cnn-1",
    }


def test_a_report_with_one_model_and_no_readers_has_no_adjustment_in_its_header(tmp_path):
    _, predictions = synthetic_tables(n_cases=8, n_models=1)
    tables = analyze_tables(None, predictions, CHOICES, n_bootstrap=10)
    files = write_report(tables, tmp_path, ReportMeta(title="One model"))
    header = unescape(files.html.read_text()).split("<h2>Study</h2>")[0]
    assert "bootstrap" not in header and "adjustment" not in header


def test_a_report_with_one_reader_explains_what_mrmc_needs(tmp_path):
    answers, predictions = synthetic_tables(n_readers=1, n_cases=12, n_models=1)
    tables = analyze_tables(answers, predictions, CHOICES, n_bootstrap=10)
    assert set(tables.comparisons["method"]) == {"z_kappa", "bootstrap"}  # no MRMC rows
    files = write_report(tables, tmp_path, ReportMeta(title="One reader"))
    html = unescape(files.html.read_text())
    assert (
        "Only one reader: the MRMC comparisons (mrmc_rrrc, mrmc_rrfc) need at least two readers "
        "and are omitted, and the intervals over readers, the z_kappa test and Fleiss' kappa "
        "among readers are undefined (shown as \u2013); the bootstrap resamples the cases only."
    ) in html
    assert "10 bootstrap resamples" in html.split("<h2>Study</h2>")[0]
    assert "No reader answers yet" not in html


def test_a_report_with_several_readers_notes_only_who_was_left_out(written):
    files, tables = written
    html = unescape(files.html.read_text())
    assert html.count('class="banner note"') == 1
    assert f'<p class="banner note">{tables.summary.readers.note}</p>' in html


def test_a_subgroup_of_one_reader_is_named(tmp_path):
    answers, _ = synthetic_tables(n_readers=3, n_cases=8)
    tables = analyze_tables(answers, None, CHOICES, n_bootstrap=10, subgroup="level", readers="all")
    files = write_report(tables, tmp_path, ReportMeta(title="Subgroups"))
    html = unescape(files.html.read_text())
    assert "Subgroup(s) chief of level have a single reader" in html  # R1 only
    assert "No model predictions: the models' tables" in html


def test_html_shows_the_readers_group_the_models_kappa_and_the_macro_accuracy(written):
    files, tables = written
    html = unescape(files.html.read_text())
    assert "Readers as a group" in html and "Models' Cohen's kappa" in html
    assert "macro one-vs-rest accuracy" in html
    # the group table's SD and range are on the page, not only in the CSV
    row = tables.readers_summary.query("`class` == 'all' and metric == 'top1_accuracy'").iloc[0]
    for column in ("sd", "median", "min", "max"):
        assert f"<td>{row[column]:.3f}</td>" in html, column
    assert "CNN versus each subgroup" not in html  # no subgroup asked for


def test_html_shows_comparisons_per_subgroup_apart_from_all_readers(tmp_path):
    answers, predictions = synthetic_tables(n_readers=6, n_cases=16)
    tables = analyze_tables(answers, predictions, CHOICES, n_bootstrap=10, subgroup="level")
    files = write_report(tables, tmp_path, ReportMeta(title="Subgroups"))
    html = unescape(files.html.read_text())
    main = html.split('id="comparisons"')[1].split("<h2")[0]
    per_subgroup = html.split('id="comparisons_subgroups"')[1].split("<h2")[0]
    assert "chief" not in main and "resident" not in main
    assert "chief" in per_subgroup and "resident" in per_subgroup


def test_input_warnings_are_shown_on_the_page(tmp_path):
    answers, predictions = synthetic_tables(n_readers=3, n_cases=8)
    predictions.loc[0, "prob_MN"] += 0.2  # that row's probabilities no longer sum to 1
    tables = analyze_tables(answers, predictions, CHOICES, n_bootstrap=10)
    assert tables.summary.warnings
    files = write_report(tables, tmp_path, ReportMeta(title="Warnings"))
    html = unescape(files.html.read_text())
    assert f"Warning: {tables.summary.warnings[0]}" in html


@pytest.mark.parametrize(
    "name",
    [
        "../per_class.csv",
        "per_class.csv/..",
        "/etc/passwd",
        "roc_../../x.png",
        "tsne_a b.png",
        "notes.txt",
        "report.HTML",
        "forest.exe",
        "..",
    ],
)
def test_only_known_file_names_are_report_files(name):
    assert not is_report_file_name(name)


def test_model_names_become_safe_file_names():
    assert safe_name("../evil model/é") == "evil_model"
    assert is_report_file_name("roc_" + safe_name("a/b c") + ".png")


def test_tsne_perplexity_stays_below_the_number_of_points():
    assert figures.tsne_perplexity(200) == 30
    assert 2 <= figures.tsne_perplexity(7) < 7


def test_file_tables_use_the_union_of_truths_as_choices(tmp_path):
    answers, predictions = synthetic_tables(n_readers=2, n_cases=8)
    answers = answers[answers["truth"] != "EAD"]
    a, p = tmp_path / "a.csv", tmp_path / "p.csv"
    answers[answers["answer"] != "EAD"].to_csv(a, index=False)
    predictions.to_csv(p, index=False)
    _, _, choices = file_tables(a, p)
    assert choices == sorted(CHOICES)


def test_file_tables_need_at_least_one_file():
    with pytest.raises(InputError, match="nothing to analyse"):
        file_tables(None, None)


@pytest.mark.django_db
def test_study_tables_of_an_empty_study_are_none():
    from tests.factories import make_study

    study = make_study(slug="empty", choices=("MN", "SK"))
    answers, predictions, choices = study_tables(study)
    assert answers is None and predictions is None and choices == ["MN", "SK"]
    extras = study_report_meta(study)
    assert extras.details["models"] == [] and extras.embeddings == {} and extras.gradcams == []


# --- counts print as integers -------------------------------------------------------------


def test_counts_are_integers_in_the_csv_files_the_workbook_and_the_page(written):
    files, _ = written
    out = files.out_dir
    auc = pd.read_csv(out / "auc.csv", dtype=str, keep_default_na=False)
    assert set(auc.loc[~auc["class"].isin(["macro", "micro"]), "n_pos"]) == {"6"}
    assert set(auc.loc[auc["class"].isin(["macro", "micro"]), "n_pos"]) == {""}  # none
    agreement = pd.read_csv(out / "agreement.csv", dtype=str, keep_default_na=False)
    ties = agreement[agreement["statistic"] == "majority_ties"].iloc[0]
    assert ties["estimate"].isdigit() and ties["n"] == "24"
    assert "." in agreement[agreement["statistic"] == "fleiss_kappa"]["estimate"].iloc[0]
    summary = pd.read_csv(out / "readers_summary.csv", dtype=str)
    assert summary["n_raters"].str.isdigit().all()

    from openpyxl import load_workbook

    sheet = load_workbook(out / "report.xlsx")["auc"]
    header = [c.value for c in sheet[1]]
    cells = [row[header.index("n_pos")] for row in sheet.iter_rows(min_row=2, values_only=True)]
    assert {type(v) for v in cells} == {int, type(None)}

    html = unescape(files.html.read_text())
    section = html.split('id="auc"')[1].split("<h2")[0]
    assert "<td>6</td>" in section and "<td>18</td>" in section and "6.000" not in section
    assert "<th>Answers per reader (min / median / max)</th><td>24 / 24 / 24</td>" in html
    timings = json.loads(files.summary.read_text())["timings"]
    assert all(round(t["seconds"], 3) == t["seconds"] for t in timings)


def test_with_integers_turns_only_whole_count_columns_into_integers():
    from analysis.report.formatting import with_integers

    frame = pd.DataFrame(
        {
            "auc": [1.0, 0.5, 1.0],
            "n_pos": [25.0, 3.0, np.nan],
            "years": [2.0, 2.5, 10.0],
            "statistic": ["majority_ties", "fleiss_kappa", "fleiss_kappa"],
            "estimate": [2.0, 0.43, 1.0],
        }
    )
    shown = with_integers(frame)
    assert shown["n_pos"].tolist()[:2] == [25, 3] and shown["n_pos"].isna().iloc[2]
    assert str(shown["n_pos"].dtype) == "Int64"
    assert shown["auc"].dtype == float and shown["years"].dtype == float  # 2.5 years
    assert shown["estimate"].tolist() == [2, 0.43, 1.0]
    assert type(shown["estimate"].iloc[0]) is int and type(shown["estimate"].iloc[2]) is float
    assert frame["n_pos"].dtype == float  # the input is left alone


def test_the_page_says_which_readers_count_and_how_many_were_left_out(written, tmp_path):
    files, _ = written
    html = unescape(files.html.read_text())
    assert "<th>Which readers count</th><td>finished readers only (default)</td>" in html
    assert "<th>Left out (had not finished)</th><td>1</td>" in html
    assert "Only the readers who had finished the study were counted" in html
    answers, predictions = synthetic_tables(n_readers=3, n_cases=8, n_models=1)
    everyone = analyze_tables(answers, predictions, CHOICES, n_bootstrap=10, readers="all")
    page = unescape(write_report(everyone, tmp_path, ReportMeta(title="All")).html.read_text())
    assert "<th>Which readers count</th><td>all readers, on the cases they answered</td>" in page
    assert "<th>Left out (had not finished)</th><td>0</td>" in page
    assert everyone.summary.readers.note in page and "Every reader was counted" in page


def test_a_class_without_positives_is_named_in_a_warning_on_the_page(tmp_path):
    from tests.analysis.factories import no_positive_tables

    answers, predictions = no_positive_tables()
    tables = analyze_tables(answers, predictions, CHOICES, n_bootstrap=10)
    html = unescape(write_report(tables, tmp_path, ReportMeta(title="No EAD")).html.read_text())
    assert "Warning: class(es) EAD have no positive case" in html
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["classes_without_positives"] == ["EAD"]


# --- the figures' cost: one gallery image, one draw per format, a bounded page -----------


def test_the_gallery_is_one_jpeg_whose_thumbnails_link_to_their_overlays(written):
    files, _ = written
    assert [p.name for p in files.figures if p.stem == "gradcam"] == ["gradcam.jpg"]
    with Image.open(files.out_dir / "gradcam.jpg") as grid:
        size = grid.size
    html = files.html.read_text()
    figure = html.split('id="fig-gradcam"')[1].split("</figure>")[0]
    assert figure.count("<img") == 1 and figure.count("data:image/jpeg;base64,") == 1
    assert f'width="{size[0]}" height="{size[1]}" usemap="#map-gradcam"' in figure
    areas = re.findall(
        r'<area shape="rect" coords="(\d+),(\d+),(\d+),(\d+)" href="([^"]+)"', figure
    )
    assert [href for *_, href in areas] == [
        f"/inference/predictions/{k}/gradcam.png" for k in (1, 2, 3)
    ]
    boxes = [tuple(int(v) for v in box) for *box, _ in areas]
    for left, top, right, bottom in boxes:  # inside the image, thumbnail-sized, apart
        assert 0 <= left < right <= size[0] and 0 <= top < bottom <= size[1]
        assert right - left <= figures.THUMB_PX and bottom - top <= figures.THUMB_PX
    assert all(a[2] <= b[0] for a, b in itertools.pairwise(boxes))


def test_a_gallery_without_addresses_has_no_links(tmp_path):
    path = tmp_path / "cam.png"
    path.write_bytes(png_bytes(0))
    items = [{"model": "m", "case": "c1", "truth": "MN", "answer": "MN", "image": path}]
    drawn = figures.gradcam_gallery(items, tmp_path, "gradcam")
    assert drawn.paths == [tmp_path / "gradcam.jpg"] and drawn.areas == []
    assert figures.gradcam_gallery([{"model": "m", "path": str(tmp_path / "gone.png")}],
                                   tmp_path, "none") is None  # fmt: skip


def test_each_figure_is_drawn_once_per_format(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    draws = []
    real = Figure.draw

    def counted(self, renderer):
        draws.append(type(renderer).__name__)
        return real(self, renderer)

    monkeypatch.setattr(Figure, "draw", counted)
    answers, predictions = synthetic_tables(n_readers=4, n_cases=12)
    tables = analyze_tables(answers, predictions, CHOICES, n_bootstrap=10)
    files = write_report(tables, tmp_path, ReportMeta(title="Draws"))
    drawn = [p for p in files.figures if p.suffix in (".png", ".svg")]
    assert len(drawn) == 2 * 6  # 3 confusion matrices, 2 ROC figures, the forest plot
    assert len(draws) == len(drawn)


def test_many_points_are_rasterised_inside_the_svg(tmp_path):
    rng = np.random.default_rng(0)
    n = figures.RASTER_POINTS + 50
    cases = pd.DataFrame({"case": [f"c{k}" for k in range(n)], "truth": ["MN", "SK"] * (n // 2)})
    fig = figures.tsne_figure("m", cases, rng.normal(size=(n, 2)), ["MN", "SK"])
    figures.save(fig, tmp_path, "many")
    svg = (tmp_path / "many.svg").read_text()
    # one raster image, not a <use> per marker (the few <use> left are the text's glyphs)
    assert "<image" in svg and svg.count("<use") < n // 2


def test_the_page_of_a_moderate_study_stays_small(tmp_path):
    """40 readers x 80 cases x 2 models with t-SNE plots and a gallery of 32 incompressible
    224 px overlays: the page embeds a gallery of thumbnails, not the overlays."""
    answers, predictions = synthetic_tables(n_readers=40, n_cases=80, n_models=2)
    tables = analyze_tables(answers, predictions, CHOICES, n_bootstrap=10)
    rng = np.random.default_rng(2)
    cams, embeddings = [], {}
    for model, part in predictions.groupby("model"):
        cases = part[["case", "truth"]].reset_index(drop=True)
        embeddings[model] = (cases, rng.normal(size=(len(cases), 16)))
        for row in part.head(16).itertuples():
            path = tmp_path / f"{model}-{row.case}.png"
            Image.fromarray(rng.integers(0, 255, (224, 224, 3), dtype=np.uint8)).save(path)
            cams.append({"model": model, "case": row.case, "truth": row.truth,
                         "answer": row.answer, "path": str(path)})  # fmt: skip
    meta = ReportMeta(title="Moderate", embeddings=embeddings, gradcams=cams)
    files = write_report(tables, tmp_path / "report", meta)
    assert {"gradcam", "tsne_cnn-0", "tsne_cnn-1"} <= {p.stem for p in files.figures}
    assert (files.out_dir / "gradcam.jpg").stat().st_size < 500_000
    assert files.html.stat().st_size < 2_500_000
