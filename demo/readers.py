"""Simulated readers of the demo study (pure numpy, no Django).

:func:`simulate_readers` is the one seeded draw behind everything about simulated
readers: it returns one :class:`SimulatedReader` per reader with the profile (``level``,
``years``, ``dermoscopy_hours``), the latent ``skill`` and the ``answers``.
:func:`simulate_reader_answers` and :func:`simulate_reader_profiles` are views of that
same draw. Seeding is per reader (``SeedSequence(seed)`` spawns one child per reader), so
reader ``i`` is the same whatever ``n_readers`` is, and profiles do not depend on the case
list.

Answer model: reader ``r`` answers case ``c`` (true class ``k``) correctly with
probability ``sigmoid(logit(base[k]) + 0.55 * skill[r] + e[r, k] - difficulty[c])``;
``base`` runs from 0.50 (SD) to 0.86 (MN), ``e`` is a small per-reader per-class
deviation and ``difficulty`` a per-case effect shared by all readers. A wrong answer
goes, half the time, to the case's own "distractor" class (so readers agree on their
mistakes) and otherwise is drawn from a confusion row that favours look-alike classes
(MN/SK/BCC; EAD/SD/Pso/Rosa; VW with SK). Overall accuracy is about 0.68, close to the
paper's reader sensitivity of 0.685.

:func:`simulate_aided_answers` gives the same readers' second, AI-assisted answers (a
sequential study: unaided first, then with the CNN's support), on a stream of its own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

__all__ = [
    "READER_LEVELS",
    "SimulatedReader",
    "simulate_aided_answers",
    "simulate_reader_answers",
    "simulate_reader_profiles",
    "simulate_readers",
]

READER_LEVELS = ("resident", "attending", "associate_chief", "chief")
_LEVEL_SHARES = (0.30, 0.35, 0.20, 0.15)
_LEVEL_YEARS = {
    "resident": (1, 5),
    "attending": (4, 15),
    "associate_chief": (10, 24),
    "chief": (15, 35),
}
_LEVEL_HOURS = {"resident": 20, "attending": 60, "associate_chief": 110, "chief": 150}
_SCORE_NOISE = 0.6  # how loosely the level follows the latent skill

# Per-class probability that an average reader picks the right diagnosis.
_BASE_ACCURACY = {
    "MN": 0.86,
    "SK": 0.72,
    "BCC": 0.70,
    "EAD": 0.55,
    "SD": 0.50,
    "Pso": 0.74,
    "VW": 0.84,
    "Rosa": 0.60,
}
_DEFAULT_ACCURACY = 0.68
_CONFUSION_GROUPS = ({"MN", "SK", "BCC"}, {"EAD", "SD", "Pso", "Rosa"}, {"SK", "VW"})
_SKILL_EFFECT = 0.55  # logit change per standard deviation of skill
_READER_CLASS_SD = 0.3
_CASE_DIFFICULTY_SD = 0.7
_DISTRACTOR_SHARE = 0.5
# The aided read (simulate_aided_answers): logit of following the CNN where the reader's
# unaided answer differs from it, its change per SD of skill and when that answer was
# wrong; and how often a reader who does not follow moves to a third label.
_FOLLOW_INTERCEPT = -0.3
_FOLLOW_SKILL = 0.8
_FOLLOW_WRONG = 1.0
_MOVE_ELSEWHERE = 0.04


@dataclass(frozen=True, eq=False)
class SimulatedReader:
    """One simulated dermatologist: profile, latent skill and answers.

    ``skill`` is a standard-normal latent; higher means more accurate. ``level``,
    ``years`` and ``dermoscopy_hours`` are correlated with it (not determined by it).
    ``answers[c]`` is the label chosen for case ``c`` (in the order of ``truth``).
    """

    index: int
    level: str
    years: int
    dermoscopy_hours: int
    skill: float
    answers: np.ndarray = field(repr=False)

    def profile(self) -> dict:
        return {"level": self.level, "years": self.years, "dermoscopy_hours": self.dermoscopy_hours}


def _level_thresholds() -> list[float]:
    dist = NormalDist(0.0, math.sqrt(1.0 + _SCORE_NOISE**2))
    cum = np.cumsum(_LEVEL_SHARES)[:-1]
    return [dist.inv_cdf(float(q)) for q in cum]


def _draw_profile(rng: np.random.Generator) -> tuple[float, dict]:
    skill = float(rng.standard_normal())
    score = skill + _SCORE_NOISE * float(rng.standard_normal())
    level = READER_LEVELS[int(np.searchsorted(_level_thresholds(), score))]
    lo, hi = _LEVEL_YEARS[level]
    frac = min(1.0, max(0.0, 0.5 + 0.2 * skill + 0.2 * float(rng.standard_normal())))
    years = lo + round(frac * (hi - lo))
    hours = _LEVEL_HOURS[level] * math.exp(0.5 * skill + 0.4 * float(rng.standard_normal()))
    return skill, {"level": level, "years": int(years), "dermoscopy_hours": round(hours)}


def _reader_seeds(n_readers: int, seed: int) -> tuple[np.random.SeedSequence, list]:
    if n_readers < 0:
        raise ValueError("n_readers must be >= 0")
    cases_ss, readers_ss = np.random.SeedSequence(seed).spawn(2)
    return cases_ss, [child.spawn(2) for child in readers_ss.spawn(n_readers)]


def _confusion(choices: Sequence[str]) -> np.ndarray:
    """Row-stochastic matrix of where a wrong answer goes (zero diagonal)."""
    k = len(choices)
    weights = np.ones((k, k))
    for i, a in enumerate(choices):
        for j, b in enumerate(choices):
            if any(a in g and b in g for g in _CONFUSION_GROUPS):
                weights[i, j] = 5.0
    np.fill_diagonal(weights, 0.0)
    return weights / weights.sum(axis=1, keepdims=True)


def simulate_readers(
    truth: Sequence[str], *, choices: Sequence[str], n_readers: int, seed: int
) -> list[SimulatedReader]:
    """Simulate ``n_readers`` dermatologists answering the cases whose true labels are
    ``truth``, each picking one label from ``choices``. Deterministic from ``seed``;
    reader ``i`` does not depend on ``n_readers``, and profiles not on ``truth``.
    """
    choices = tuple(choices)
    if len(choices) < 2 or len(set(choices)) != len(choices):
        raise ValueError("choices must hold at least two distinct labels")
    index = {c: i for i, c in enumerate(choices)}
    unknown = sorted({t for t in truth if t not in index})
    if unknown:
        raise ValueError(f"truth labels not among choices: {unknown}")
    k = len(choices)
    t_idx = np.array([index[t] for t in truth], dtype=np.intp)
    n_cases = len(t_idx)

    base = np.array([_BASE_ACCURACY.get(c, _DEFAULT_ACCURACY) for c in choices])
    base_logit = np.log(base / (1 - base))
    confusion = _confusion(choices)
    cdf = np.cumsum(confusion, axis=1)

    cases_ss, reader_ss = _reader_seeds(n_readers, seed)
    case_rng = np.random.default_rng(cases_ss)
    difficulty = _CASE_DIFFICULTY_SD * case_rng.standard_normal(n_cases)
    u = case_rng.random(n_cases)
    distractor = np.minimum((u[:, None] > cdf[t_idx]).sum(axis=1), k - 1)

    labels = np.array(choices, dtype=object)
    readers = []
    for i, (profile_ss, answer_ss) in enumerate(reader_ss):
        skill, profile = _draw_profile(np.random.default_rng(profile_ss))
        rng = np.random.default_rng(answer_ss)
        per_class = _READER_CLASS_SD * rng.standard_normal(k)
        logit = base_logit[t_idx] + _SKILL_EFFECT * skill + per_class[t_idx] - difficulty
        correct = rng.random(n_cases) < 1.0 / (1.0 + np.exp(-logit))
        u = rng.random(n_cases)
        drawn = np.minimum((u[:, None] > cdf[t_idx]).sum(axis=1), k - 1)
        wrong = np.where(rng.random(n_cases) < _DISTRACTOR_SHARE, distractor, drawn)
        answers = labels[np.where(correct, t_idx, wrong)]
        readers.append(SimulatedReader(index=i, skill=skill, answers=answers, **profile))
    return readers


def simulate_reader_answers(
    truth: Sequence[str], *, choices: Sequence[str], n_readers: int, seed: int
) -> np.ndarray:
    """Answers of :func:`simulate_readers` as an ``(n_readers, n_cases)`` object array."""
    readers = simulate_readers(truth, choices=choices, n_readers=n_readers, seed=seed)
    out = np.empty((n_readers, len(truth)), dtype=object)
    for r in readers:
        out[r.index] = r.answers
    return out


def simulate_reader_profiles(n_readers: int, *, seed: int) -> list[dict]:
    """Profiles (``level``, ``years``, ``dermoscopy_hours``) of the readers that
    :func:`simulate_readers` gives for the same ``seed``, without drawing answers."""
    _, reader_ss = _reader_seeds(n_readers, seed)
    return [_draw_profile(np.random.default_rng(p))[1] for p, _ in reader_ss]


def _aided_seed(index: int, seed: int) -> np.random.SeedSequence:
    # The third child of SeedSequence(seed), beside the cases' (0) and the readers' (1)
    # streams: SeedSequence(seed).spawn(3)[2].spawn(n)[index], whatever n is.
    return np.random.SeedSequence(seed, spawn_key=(2, index))


def simulate_aided_answers(
    readers: Sequence[SimulatedReader],
    *,
    truth: Sequence[str],
    cnn_answers: Sequence[str],
    choices: Sequence[str],
    seed: int,
) -> np.ndarray:
    """The final answers of ``readers`` after seeing the CNN's answer to each case, as an
    ``(len(readers), n_cases)`` object array in the order of ``readers``; their unaided
    answers are ``reader.answers`` (from :func:`simulate_readers` on the same ``truth``).

    Model (a sequential read, Tschandl et al., Nat Med 2020): where reader ``r``'s unaided
    answer ``u[r, c]`` is the CNN's answer ``a[c]``, they keep it. Otherwise they follow
    the CNN with probability

        p_follow[r, c] = sigmoid(-0.3 - 0.8 * skill[r] + 1.0 * [u[r, c] != truth[c]])

    (less often the more skilled they are; more often where their own answer was wrong,
    the doubt that comes with it), and if not, they keep their answer, except that with
    probability 0.04 they move to a third label, drawn from the confusion row of their
    answer without the CNN's. An average reader follows a disagreeing CNN 43% of the time
    when right and 67% when wrong; a reader 1.5 SD above average 18% and 38%.

    Seeded per reader: reader ``i`` draws from its own stream of ``seed`` (apart from
    the unaided draw), so their aided answers do not depend on the other readers.
    """
    choices = tuple(choices)
    index = {c: i for i, c in enumerate(choices)}
    if len(cnn_answers) != len(truth):
        raise ValueError("cnn_answers must have one answer per case of truth")
    unknown = sorted({a for a in [*truth, *cnn_answers] if a not in index})
    if unknown:
        raise ValueError(f"labels not among choices: {unknown}")
    k = len(choices)
    t_idx = np.array([index[t] for t in truth], dtype=np.intp)
    a_idx = np.array([index[a] for a in cnn_answers], dtype=np.intp)
    confusion = _confusion(choices)
    labels = np.array(choices, dtype=object)
    out = np.empty((len(readers), len(t_idx)), dtype=object)
    for row, reader in enumerate(readers):
        if len(reader.answers) != len(t_idx):
            raise ValueError(f"reader {reader.index} has not answered every case of truth")
        u_idx = np.array([index[u] for u in reader.answers], dtype=np.intp)
        rng = np.random.default_rng(_aided_seed(reader.index, seed))
        logit = _FOLLOW_INTERCEPT - _FOLLOW_SKILL * reader.skill + _FOLLOW_WRONG * (u_idx != t_idx)
        follows = rng.random(len(t_idx)) < 1.0 / (1.0 + np.exp(-logit))
        # A third label: the confusion row of the reader's answer, without the CNN's.
        weights = confusion[u_idx].copy()
        weights[np.arange(len(t_idx)), a_idx] = 0.0
        total = weights.sum(axis=1)
        cdf = np.cumsum(weights, axis=1) / np.where(total > 0, total, 1.0)[:, None]
        elsewhere_idx = np.minimum((rng.random(len(t_idx))[:, None] > cdf).sum(axis=1), k - 1)
        moves = (rng.random(len(t_idx)) < _MOVE_ELSEWHERE) & (total > 0)
        disagree = u_idx != a_idx
        final = np.where(
            disagree & follows, a_idx, np.where(disagree & moves, elsewhere_idx, u_idx)
        )
        out[row] = labels[final]
    return out
