"""Cohen's kappa with its large-sample variance, and Fleiss' kappa among many raters.

Hand-written rather than statsmodels' ``cohens_kappa`` (which computes the same
Fleiss-Cohen-Everitt variance, and the tests check that it agrees) because we need it
batched over thousands of tables (raters x classes) in one numpy call; statsmodels'
``fleiss_kappa`` has no standard error and assumes the same number of raters per subject.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

# ASE0 at or below this, on the scale 1 / ((1 - pe) sqrt(n)), is taken as exactly 0
# (see cohen_kappa): then z and p are NaN.
ASE0_TOLERANCE = 1e-6


@dataclass(frozen=True)
class KappaResult:
    """Cohen's kappa of one or many square tables (arrays broadcast over the batch)."""

    kappa: np.ndarray
    ase: np.ndarray  # Fleiss-Cohen-Everitt large-sample SE (for CIs)
    ase0: np.ndarray  # SE under H0: kappa = 0 (for the z-test)
    z: np.ndarray
    p: np.ndarray  # two-sided, from z
    ci_low: np.ndarray
    ci_high: np.ndarray
    n: np.ndarray


def cohen_kappa(table: np.ndarray, *, alpha: float = 0.05) -> KappaResult:
    """Cohen's kappa of square contingency tables ``(..., k, k)`` (rows rater A, cols rater B).

    kappa = (po - pe) / (1 - pe), po = sum p_ii, pe = sum p_i. p_.i (Cohen 1960).
    ASE (Fleiss, Cohen & Everitt 1969, as printed by SAS PROC FREQ):
    var = [sum_i p_ii (1 - (p_i. + p_.i)(1 - kappa))^2
           + (1 - kappa)^2 sum_{i!=j} p_ij (p_.i + p_j.)^2
           - (kappa - pe (1 - kappa))^2] / ((1 - pe)^2 n);
    under H0: var0 = [pe + pe^2 - sum_i p_i. p_.i (p_i. + p_.i)] / ((1 - pe)^2 n).
    CI = kappa -/+ z_{1-alpha/2} ASE (Wald); z = kappa / ASE0. NaN where n = 0 or pe = 1.

    A zero ASE0 (kappa = 0 by construction, e.g. a rater who never names the class of a
    one-vs-rest table, or a class with no positive case) has no test: ASE0 is then
    exactly 0 and z and p are NaN, for every table alike. In floating point the bracket
    v0 = (1 - pe)^2 n var0 of such a table is a rounding residue of a few machine
    epsilons (terms of order 1 cancel), so sqrt(v0) = ASE0 (1 - pe) sqrt(n) comes out
    anywhere from 0 to ~1.5e-8 (ASE0 from 0 to ~1e-7 on 50 to 1000 cases), which used to
    give z = NaN for one class and z ~ 0, p = 1 for another. A genuine v0 of integer counts is far larger:
    for a 2x2 table v0 = 4 p_1. p_2. p_.1 p_.2 exactly, at least 4 (n - 1)^2 / n^4, so
    sqrt(v0) >= 2 (n - 1) / n^2; for C x C tables no value below (n - 1)^2 / n^4 was
    found. Hence sqrt(v0) <= :data:`ASE0_TOLERANCE` (1e-6, about 70 times the largest
    residue) counts as 0, which leaves every genuine ASE0 of studies up to 10^5 cases
    (sqrt(v0) >= 1e-5) untouched.
    """
    t = np.asarray(table, dtype=float)
    n = t.sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        p = t / n[..., None, None]
        row = p.sum(axis=-1)
        col = p.sum(axis=-2)
        diag = np.diagonal(p, axis1=-2, axis2=-1)
        po = diag.sum(axis=-1)
        pe = (row * col).sum(axis=-1)
        kappa = (po - pe) / (1 - pe)
        one_minus = (1 - kappa)[..., None]
        a = (diag * (1 - (row + col) * one_minus) ** 2).sum(axis=-1)
        # p_ij (p_.i + p_j.)^2 for i != j: col[i] along rows, row[j] along columns
        weights = (col[..., :, None] + row[..., None, :]) ** 2
        off = p * weights
        off_sum = off.sum(axis=(-2, -1)) - np.diagonal(off, axis1=-2, axis2=-1).sum(axis=-1)
        b = (1 - kappa) ** 2 * off_sum
        c = (kappa - pe * (1 - kappa)) ** 2
        var = (a + b - c) / ((1 - pe) ** 2 * n)
        v0 = pe + pe**2 - (row * col * (row + col)).sum(axis=-1)
        v0 = np.where(v0 <= ASE0_TOLERANCE**2, 0.0, v0)
        ase = np.sqrt(np.maximum(var, 0))
        ase0 = np.sqrt(v0 / ((1 - pe) ** 2 * n))
        z = np.where(ase0 > 0, kappa / ase0, np.nan)
    crit = stats.norm.ppf(1 - alpha / 2)
    return KappaResult(
        kappa=kappa,
        ase=ase,
        ase0=ase0,
        z=z,
        p=2 * stats.norm.sf(np.abs(z)),
        ci_low=kappa - crit * ase,
        ci_high=kappa + crit * ase,
        n=n,
    )


def contingency_tables(a: np.ndarray, b: np.ndarray, n_classes: int) -> np.ndarray:
    """Square tables ``(..., C, C)`` of label indices ``a`` (rows) against ``b`` (columns).

    ``a`` and ``b`` broadcast to ``(..., K)``; a pair where either is negative (missing)
    is left out. Built with one ``np.bincount`` over flattened indices.
    """
    a, b = np.broadcast_arrays(np.asarray(a), np.asarray(b))
    batch = a.shape[:-1]
    n_batch = int(np.prod(batch)) if batch else 1
    a2 = a.reshape(n_batch, -1)
    b2 = b.reshape(n_batch, -1)
    ok = (a2 >= 0) & (b2 >= 0)
    offset = np.arange(n_batch)[:, None] * n_classes * n_classes
    index = (offset + a2 * n_classes + b2)[ok]
    counts = np.bincount(index, minlength=n_batch * n_classes * n_classes)
    return counts.reshape(*batch, n_classes, n_classes).astype(float)


def one_vs_rest_tables(table: np.ndarray) -> np.ndarray:
    """2x2 tables ``(..., C, 2, 2)`` for each class c of ``(..., C, C)`` tables.

    Row/column 0 is "c", 1 is "not c": [[n_cc, n_c.-n_cc], [n_.c-n_cc, rest]].
    """
    t = np.asarray(table, dtype=float)
    both = np.diagonal(t, axis1=-2, axis2=-1)
    rows = t.sum(axis=-1)
    cols = t.sum(axis=-2)
    total = t.sum(axis=(-2, -1))[..., None]
    out = np.stack(
        [
            np.stack([both, rows - both], axis=-1),
            np.stack([cols - both, total - rows - cols + both], axis=-1),
        ],
        axis=-2,
    )
    return out


@dataclass(frozen=True)
class FleissResult:
    """Fleiss' kappa overall and per category, with the null standard errors."""

    kappa: float
    se0: float
    z: float
    p: float
    n_subjects: int
    category_kappa: np.ndarray
    category_se0: np.ndarray
    category_z: np.ndarray
    category_p: np.ndarray


def fleiss_kappa(counts: np.ndarray) -> FleissResult:
    """Fleiss' kappa from a subjects x categories table of rating counts.

    kappa = (P - Pe) / (1 - Pe), P = mean_i sum_j x_ij (x_ij - 1) / (n_i (n_i - 1)),
    Pe = sum_j p_j^2, p_j = sum_i x_ij / sum_i n_i (Fleiss 1971; the raters may differ
    between subjects). Category kappa_j = 1 - sum_i x_ij (n_i - x_ij) / (n_i (n_i - 1))
    / (N p_j q_j). Standard errors under H0 (Fleiss, Nee & Landis 1979, as irr's
    ``kappam.fleiss``): se0 = sqrt(2) / (sum p_j q_j sqrt(D)) *
    sqrt((sum p_j q_j)^2 - sum p_j q_j (q_j - p_j)), se0_j = sqrt(2 / D), with
    D = sum_i n_i (n_i - 1) (= N n (n - 1) when every subject has n ratings; with unequal
    n_i this D is an approximation). Subjects with fewer than two ratings are dropped.
    """
    x = np.asarray(counts, dtype=float)
    n_i = x.sum(axis=1)
    keep = n_i >= 2
    x, n_i = x[keep], n_i[keep]
    n_subjects = len(x)
    pair = n_i * (n_i - 1)
    p_j = x.sum(axis=0) / n_i.sum()
    q_j = 1 - p_j
    agree = (x * (x - 1)).sum(axis=1) / pair
    p_bar, p_e = agree.mean(), (p_j**2).sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        kappa = (p_bar - p_e) / (1 - p_e)
        d = pair.sum()
        pq = p_j * q_j
        se0 = (
            np.sqrt(2) / (pq.sum() * np.sqrt(d)) * np.sqrt(pq.sum() ** 2 - (pq * (q_j - p_j)).sum())
        )
        disagree = (x * (n_i[:, None] - x) / pair[:, None]).sum(axis=0)
        cat_kappa = 1 - disagree / (n_subjects * pq)
        cat_se0 = np.full_like(cat_kappa, np.sqrt(2 / d))
        z = kappa / se0
        cat_z = cat_kappa / cat_se0
    return FleissResult(
        kappa=float(kappa),
        se0=float(se0),
        z=float(z),
        p=float(2 * stats.norm.sf(abs(z))),
        n_subjects=n_subjects,
        category_kappa=cat_kappa,
        category_se0=cat_se0,
        category_z=cat_z,
        category_p=2 * stats.norm.sf(np.abs(cat_z)),
    )
