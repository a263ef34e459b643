"""``analyze --study demo`` on the real demo study (the issue's Done-when), and the progress
bars of ``analyze`` when stderr is a terminal."""

from __future__ import annotations

import io
import re
import sys

import pytest
from django.core.management import call_command

from tests.analysis.factories import CHOICES, synthetic_tables

TABLES = ("per_class", "comparisons", "agreement", "auc", "auc_tests")


class TTY(io.StringIO):
    """A text stream that says it is a terminal, as an interactive stderr does."""

    def isatty(self) -> bool:
        return True


@pytest.mark.django_db
@pytest.mark.slow
def test_analyze_on_the_demo_study_writes_every_table_figure_and_the_page(settings, tmp_path):
    """The demo as ``make demo`` builds it, with 5 simulated readers instead of 30 and the
    untrained demo CNN at 64 px instead of 224, so it runs in about a minute."""
    import torch

    from demo.services import demo_build

    torch.set_num_threads(1)  # two cores shared with the other test workers
    settings.DATA_DIR = tmp_path / "data"
    demo_build(seed=0, n_readers=5, data_dir=settings.DATA_DIR)
    log = io.StringIO()
    call_command(
        "demo_models", "--sync", "--img-size", "64", "--batch-size", "50", stdout=log, stderr=log
    )
    out = tmp_path / "report"
    text = io.StringIO()
    call_command(
        "analyze",
        "--study",
        "demo",
        "--out",
        str(out),
        "--bootstrap",
        "50",
        "--no-progress",
        stdout=text,
        stderr=io.StringIO(),
    )
    names = {p.name for p in out.iterdir()}
    expected = {
        *(f"{t}.csv" for t in TABLES),
        "summary.json",
        "report.xlsx",
        "report.html",
    }
    model = "demo-effb4-aux-untrained"
    for stem in (
        "confusion_readers",
        f"confusion_{model}",
        f"roc_{model}",
        "forest",
        f"tsne_{model}",
    ):
        expected |= {f"{stem}.png", f"{stem}.svg"}
    expected.add("gradcam.jpg")  # the gallery: one JPEG of thumbnails
    assert expected <= names, sorted(expected - names)
    assert f"{len(names)} files written" in text.getvalue()
    html = (out / "report.html").read_text(encoding="utf-8")
    # Self-contained: every src is a data: URI, every href an in-page anchor or, for the
    # gallery's thumbnails, the permission-checked view of a full overlay; no scripts.
    sources = re.findall(r"""\ssrc\s*=\s*["']([^"']*)""", html, flags=re.IGNORECASE)
    assert sources and all(s.startswith("data:") for s in sources), [s[:40] for s in sources]
    links = re.findall(r"""href\s*=\s*["']([^"']*)""", html, flags=re.IGNORECASE)
    overlay = re.compile(r"/inference/predictions/\d+/gradcam\.png")
    assert all(link.startswith("#") or overlay.fullmatch(link) for link in links), links
    assert any(overlay.fullmatch(link) for link in links)
    assert "<script" not in html.lower() and "@import" not in html and "url(" not in html
    assert "Synthetic study" in html and f"Model “{model}” is UNTRAINED" in html
    assert html.count("data:image/png;base64,") == len([n for n in names if n.endswith(".png")])


@pytest.mark.django_db
def test_analyze_draws_progress_bars_on_a_terminal(tmp_path, monkeypatch):
    """Bars go to stderr when it is a terminal: the analysis steps, each bootstrap chunk
    and the report; ``--no-progress`` turns them off."""
    answers, predictions = synthetic_tables(n_readers=3, n_cases=8, n_models=1)
    answers.to_csv(tmp_path / "a.csv", index=False)
    predictions.to_csv(tmp_path / "p.csv", index=False)
    args = ["analyze", "--answers", str(tmp_path / "a.csv"), "--predictions"]
    args += [str(tmp_path / "p.csv"), "--bootstrap", "600", "--choices", ",".join(CHOICES)]

    stderr = TTY()
    monkeypatch.setattr(sys, "stderr", stderr)
    call_command(*args, "--out", str(tmp_path / "bars"), stdout=io.StringIO())
    shown = stderr.getvalue()
    assert re.search(r"analysis: 100%.*8/8", shown), shown[-500:]
    assert re.search(r"bootstrap: 100%.*600/600", shown), shown[-500:]
    assert re.search(r"report: 100%.*4/4", shown), shown[-500:]

    quiet = TTY()
    monkeypatch.setattr(sys, "stderr", quiet)
    call_command(*args, "--out", str(tmp_path / "quiet"), "--no-progress", stdout=io.StringIO())
    assert quiet.getvalue() == ""
