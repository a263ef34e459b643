"""Time :func:`analysis.stats.analyze_tables` on a synthetic study of the reference size,
and then, separately, the report's files and figures.

280 readers x 200 cases x 8 classes (25 cases each), 4 models with probabilities,
2000 bootstrap resamples, seeded. Prints each table step's time, then the report's
steps (CSV, workbook, each figure kind, page) for :func:`analysis.report.write_report`
with t-SNE of 1792-dimensional embeddings (EfficientNet-b4's width) and a Grad-CAM
gallery of 16 overlays per model. The last line is ``seconds <total>`` for the tables
alone. Run from the repository root: ``python bench/analysis.py``.
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
    (random 224 px PNGs written into ``folder``) as the database path gives them."""
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
            gradcams.append(
                {"model": model, "case": row.case, "truth": row.truth,
                 "answer": row.answer, "path": str(path)}
            )  # fmt: skip
    return embeddings, gradcams


def time_report(tables, predictions: pd.DataFrame) -> None:
    """Write the full report into a temporary folder and print each step's time."""
    import django

    django.setup()
    from analysis.report import ReportMeta, write_report

    with tempfile.TemporaryDirectory(prefix="bench-analysis-") as tmp:
        folder = Path(tmp)
        embeddings, gradcams = report_extras(predictions, folder)
        start = time.perf_counter()
        meta = ReportMeta(title="Benchmark study", embeddings=embeddings, gradcams=gradcams)
        files = write_report(tables, folder / "report", meta)
        total = time.perf_counter() - start
        figure_seconds = sum(v for k, v in files.timings.items() if k.startswith("figures"))
        print(f"report: {len(files.paths())} files, {len(files.figures)} figure files")
        for step, seconds in files.timings.items():
            print(f"report {step:<17} {seconds:6.2f} s")
        print(f"report figures total  {figure_seconds:6.2f} s")
        print(f"report total          {total:6.2f} s")


def main() -> None:
    answers, predictions = synthetic_study()
    start = time.perf_counter()
    # Every reader skips ~5% of the cases: count them all, as the timings always did.
    tables = analyze_tables(answers, predictions, CHOICES, seed=0, n_bootstrap=2000, readers="all")
    total = time.perf_counter() - start
    for step in tables.timings.itertuples():
        print(f"{step.step:<20} {step.seconds:6.2f} s")
    print(f"rows: per_class {len(tables.per_class)}, comparisons {len(tables.comparisons)}")
    print(f"tables total         {total:6.2f} s")
    time_report(tables, predictions)
    print(f"seconds {total:.1f}")


if __name__ == "__main__":
    main()
