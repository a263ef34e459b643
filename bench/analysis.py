"""Time :func:`analysis.stats.analyze_tables` on a synthetic study of the reference size,
and then, separately, the report's files and figures.

280 readers x 200 cases x 8 classes (25 cases each), 4 models with probabilities,
2000 bootstrap resamples, seeded. Prints each table step's time, then the report's
steps (CSV, workbook, each figure kind, page) for :func:`analysis.report.write_report`
with t-SNE plots of 1792-dimensional embeddings (EfficientNet-b4's width) and a Grad-CAM
gallery of 16 overlays per model (random 224 px PNGs: incompressible, the worst case for
the gallery's JPEG). As on the database path, the t-SNE points are fitted once per
inference run, before the report (timed apart: ``tsne fits``), and the report draws
them. Then ``report.html <MB>``, ``report cpu <CPU seconds of write_report>`` (what a
loaded machine's wall time hides), ``report <seconds of write_report>`` and, last,
``seconds <total>`` for the tables alone. Run from the repository root:
``python bench/analysis.py``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "readerstudy.settings")

from analysis.stats import analyze_tables

CHOICES = ["MN", "SK", "BCC", "EAD", "SD", "Pso", "VW", "Rosa"]


def synthetic_study(
    *, n_readers: int = 280, n_cases: int = 200, n_models: int = 4, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Answers and predictions: readers right with a reader-specific skill, otherwise a
    random other label; models from noisy logits; ~5% of reader answers missing."""
    rng = np.random.default_rng(seed)
    c = len(CHOICES)
    truth = np.repeat(np.arange(c), n_cases // c)
    cases = [f"case{k:03d}" for k in range(len(truth))]
    skill = rng.uniform(0.45, 0.9, n_readers)[:, None]
    right = rng.random((n_readers, len(truth))) < skill
    other = (truth + rng.integers(1, c, (n_readers, len(truth)))) % c
    answer = np.where(right, truth, other)
    answered = rng.random(answer.shape) > 0.05
    r_idx, k_idx = np.nonzero(answered)
    answers = pd.DataFrame(
        {
            "reader": [f"r{r:03d}" for r in r_idx],
            "case": np.array(cases)[k_idx],
            "truth": np.array(CHOICES)[truth[k_idx]],
            "answer": np.array(CHOICES)[answer[r_idx, k_idx]],
            "level": np.array(["junior", "senior"])[r_idx % 2],
        }
    )
    logits = rng.normal(0, 1, (n_models, len(truth), c))
    logits[:, np.arange(len(truth)), truth] += rng.uniform(1.5, 3.0, (n_models, 1))
    probs = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    frames = []
    for m in range(n_models):
        frame = pd.DataFrame(
            {
                "model": f"cnn{m}",
                "case": cases,
                "truth": np.array(CHOICES)[truth],
                "answer": np.array(CHOICES)[probs[m].argmax(axis=1)],
            }
        )
        for j, code in enumerate(CHOICES):
            frame[f"prob_{code}"] = probs[m, :, j]
        frames.append(frame)
    return answers, pd.concat(frames, ignore_index=True)


def report_extras(
    predictions: pd.DataFrame, folder: Path, *, dim: int = 1792, per_model: int = 16
) -> tuple[dict, list[dict]]:
    """Embeddings ``{model: (cases, n x dim)}`` clustered by class, and Grad-CAM overlays
    (random 224 px PNGs written into ``folder``, with the address of each overlay's view)
    as the database path gives them."""
    from PIL import Image

    rng = np.random.default_rng(1)
    embeddings, gradcams = {}, []
    for model, part in predictions.groupby("model", sort=True):
        cases = part[["case", "truth"]].reset_index(drop=True)
        centres = rng.normal(0, 1, (len(CHOICES), dim))
        codes = cases["truth"].map({c: i for i, c in enumerate(CHOICES)}).to_numpy()
        matrix = (centres[codes] + rng.normal(0, 2, (len(cases), dim))).astype(np.float32)
        embeddings[model] = (cases, matrix)
        for row in part.head(per_model).itertuples():
            path = folder / f"cam_{model}_{row.case}.png"
            Image.fromarray(rng.integers(0, 255, (224, 224, 3), dtype=np.uint8)).save(path)
            url = f"/inference/predictions/{len(gradcams) + 1}/gradcam.png"  # as the view's
            gradcams.append(
                {"model": model, "case": row.case, "truth": row.truth, "answer": row.answer,
                 "path": str(path), "url": url}
            )  # fmt: skip
    return embeddings, gradcams


def fitted_projections(embeddings: dict, *, seed: int) -> dict:
    """``{model: seed -> (cases, points)}``: each model's t-SNE fitted once, as a run
    stores it when it is done; prints the time of the fits (not part of a report)."""
    from analysis.stats.projection import tsne_points

    start = time.perf_counter()
    points = {
        m: (cases, tsne_points(matrix, seed=seed)) for m, (cases, matrix) in embeddings.items()
    }
    print(f"tsne fits (once per run, {len(points)} runs) {time.perf_counter() - start:6.2f} s")
    return {m: (lambda s, found=found: found if s == seed else None) for m, found in points.items()}


def time_report(tables, predictions: pd.DataFrame) -> None:
    """Write the full report into a temporary folder and print each step's time."""
    import django

    django.setup()
    from analysis.report import ReportMeta, write_report

    with tempfile.TemporaryDirectory(prefix="bench-analysis-") as tmp:
        folder = Path(tmp)
        embeddings, gradcams = report_extras(predictions, folder)
        projections = fitted_projections(embeddings, seed=int(tables.summary.seed))
        start, cpu = time.perf_counter(), time.process_time()
        meta = ReportMeta(title="Benchmark study", projections=projections, gradcams=gradcams)
        files = write_report(tables, folder / "report", meta)
        total, cpu = time.perf_counter() - start, time.process_time() - cpu
        figure_seconds = sum(v for k, v in files.timings.items() if k.startswith("figures"))
        print(f"report: {len(files.paths())} files, {len(files.figures)} figure files")
        for step, seconds in files.timings.items():
            print(f"report {step:<17} {seconds:6.2f} s")
        print(f"report figures total  {figure_seconds:6.2f} s")
        size = files.html.stat().st_size
        print(f"report.html {size / 1e6:.1f} MB ({size} bytes)")
        # CPU seconds of this process: what a loaded machine's wall time hides.
        print(f"report cpu {cpu:.1f}")
        print(f"report {total:.1f}")


def main() -> None:
    answers, predictions = synthetic_study()
    start, cpu = time.perf_counter(), time.process_time()
    # Every reader skips ~5% of the cases: count them all, as the timings always did.
    tables = analyze_tables(answers, predictions, CHOICES, seed=0, n_bootstrap=2000, readers="all")
    total, cpu = time.perf_counter() - start, time.process_time() - cpu
    for step in tables.timings.itertuples():
        print(f"{step.step:<20} {step.seconds:6.2f} s")
    print(f"rows: per_class {len(tables.per_class)}, comparisons {len(tables.comparisons)}")
    print(f"tables total         {total:6.2f} s (cpu {cpu:.2f} s)")
    time_report(tables, predictions)
    print(f"seconds {total:.1f}")


if __name__ == "__main__":
    main()
