"""Two-dimensional t-SNE of embeddings (van der Maaten & Hinton 2008, scikit-learn's
``TSNE``), the points of the report's embedding plots.

A fit of a 200-case study takes seconds, and the same embeddings, perplexity and seed
always give the same points: the inference app stores them with the run that made the
embeddings (:mod:`inference.services.projection`), so a report draws and fits nothing.
"""

from __future__ import annotations

import numpy as np

# Below this many points there is nothing to see (and t-SNE needs perplexity < n).
TSNE_MIN_POINTS = 5
# Exact gradients beat Barnes-Hut's per-iteration overhead up to ~500 points (a 200-case
# study: 1.5 s instead of 7 to 15 s on a 2-core machine) and need no approximation.
TSNE_EXACT_MAX_POINTS = 500


def tsne_perplexity(n: int) -> float:
    """30 (the usual default) where there are enough points, else (n - 1) / 3, at least 2:
    scikit-learn requires perplexity < n."""
    return float(min(30.0, max(2.0, (n - 1) / 3)))


def tsne_method(n: int) -> str:
    """``exact`` up to :data:`TSNE_EXACT_MAX_POINTS` points, ``barnes_hut`` above."""
    return "exact" if n <= TSNE_EXACT_MAX_POINTS else "barnes_hut"


def tsne_points(matrix: np.ndarray, *, seed: int) -> np.ndarray:
    """The n x 2 t-SNE embedding (float64) of the rows of ``matrix`` (n x d): PCA
    initialisation, perplexity :func:`tsne_perplexity`, :func:`tsne_method`,
    ``random_state=seed``. Raises ValueError for fewer than :data:`TSNE_MIN_POINTS` rows."""
    from sklearn.manifold import TSNE

    n = matrix.shape[0]
    if n < TSNE_MIN_POINTS:
        raise ValueError(f"t-SNE needs at least {TSNE_MIN_POINTS} points, got {n}")
    return TSNE(
        n_components=2,
        perplexity=tsne_perplexity(n),
        init="pca",
        random_state=seed,
        method=tsne_method(n),
    ).fit_transform(np.asarray(matrix, dtype=np.float64))
