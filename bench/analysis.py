"""Time :func:`analysis.stats.analyze_tables` on a synthetic study of the reference size.

280 readers x 200 cases x 8 classes (25 cases each), 4 models with probabilities,
2000 bootstrap resamples, seeded. Prints each step's time; the last line is
``seconds <total>`` for the tables. Run from the repository root:
``python bench/analysis.py``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

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


def main() -> None:
    answers, predictions = synthetic_study()
    start = time.perf_counter()
    tables = analyze_tables(answers, predictions, CHOICES, seed=0, n_bootstrap=2000)
    total = time.perf_counter() - start
    for step in tables.timings.itertuples():
        print(f"{step.step:<20} {step.seconds:6.2f} s")
    print(f"rows: per_class {len(tables.per_class)}, comparisons {len(tables.comparisons)}")
    print(f"seconds {total:.1f}")


if __name__ == "__main__":
    main()
