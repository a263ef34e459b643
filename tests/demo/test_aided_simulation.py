"""The simulated readers' AI-assisted read (demo.readers.simulate_aided_answers): pure
numpy, no database."""

from __future__ import annotations

import numpy as np
import pytest

from demo.images import DEMO_CHOICES
from demo.readers import simulate_aided_answers, simulate_readers

TRUTH = [code for code in DEMO_CHOICES for _ in range(50)]
TRUTH_ARRAY = np.array(TRUTH, dtype=object)


def cnn_with_accuracy(accuracy: float, *, seed: int = 5) -> list[str]:
    """A CNN's answers to TRUTH: right with probability ``accuracy``, otherwise another
    label drawn uniformly."""
    rng = np.random.default_rng(seed)
    answers = []
    for label in TRUTH:
        if rng.random() < accuracy:
            answers.append(label)
        else:
            answers.append(str(rng.choice([c for c in DEMO_CHOICES if c != label])))
    return answers


@pytest.fixture(scope="module")
def readers():
    return simulate_readers(TRUTH, choices=DEMO_CHOICES, n_readers=200, seed=14)


def aided(readers, cnn, *, seed: int = 14) -> np.ndarray:
    return simulate_aided_answers(
        readers, truth=TRUTH, cnn_answers=cnn, choices=DEMO_CHOICES, seed=seed
    )


def unaided(readers) -> np.ndarray:
    return np.array([r.answers for r in readers])


def test_a_reader_who_agrees_with_the_cnn_keeps_the_answer(readers):
    cnn = cnn_with_accuracy(0.8)
    final, first = aided(readers, cnn), unaided(readers)
    agree = first == np.array(cnn, dtype=object)
    assert agree.any()
    assert (final[agree] == first[agree]).all()
    assert set(np.unique(final)) <= set(DEMO_CHOICES)


def test_lower_skill_readers_follow_the_cnn_more(readers):
    cnn = np.array(cnn_with_accuracy(0.8), dtype=object)
    final, first = aided(readers, list(cnn)), unaided(readers)
    disagree = first != cnn
    follow = ((final == cnn) & disagree).sum(axis=1) / disagree.sum(axis=1)
    skill = np.array([r.skill for r in readers])
    assert np.corrcoef(skill, follow)[0, 1] < -0.6
    low, high = skill < np.quantile(skill, 0.25), skill > np.quantile(skill, 0.75)
    assert follow[low].mean() > follow[high].mean() + 0.2
    # Every reader follows sometimes and not always.
    assert (follow > 0).all() and (follow < 1).all()
    # ... more often where their own answer was wrong.
    wrong = disagree & (first != TRUTH_ARRAY)
    right = disagree & (first == TRUTH_ARRAY)
    assert ((final == cnn) & wrong).sum() / wrong.sum() > (
        (final == cnn) & right
    ).sum() / right.sum() + 0.15
    # Those who do not follow mostly keep their answer; a few move to a third label.
    elsewhere = disagree & (final != cnn) & (final != first)
    assert 0 < elsewhere.sum() / disagree.sum() < 0.05


def test_a_cnn_better_than_the_readers_raises_their_accuracy(readers):
    cnn = cnn_with_accuracy(0.9)
    before = (unaided(readers) == TRUTH_ARRAY).mean(axis=1)
    after = (aided(readers, cnn) == TRUTH_ARRAY).mean(axis=1)
    assert before.mean() < 0.75  # the readers are worse than the CNN
    assert after.mean() > before.mean() + 0.08
    assert (after > before).mean() > 0.95
    # ... the least skilled gain most (Tschandl et al. 2020).
    skill = np.array([r.skill for r in readers])
    assert np.corrcoef(skill, after - before)[0, 1] < -0.3


def test_a_faulty_cnn_misleads_every_reader(readers):
    cnn = cnn_with_accuracy(0.0)
    before = (unaided(readers) == TRUTH_ARRAY).mean(axis=1)
    after = (aided(readers, cnn) == TRUTH_ARRAY).mean(axis=1)
    assert (after < before).all()


def test_same_seed_same_answers_and_each_reader_has_its_own_stream(readers):
    cnn = cnn_with_accuracy(0.7)
    first = aided(readers, cnn)
    assert (aided(readers, cnn) == first).all()
    assert (aided(readers, cnn, seed=15) != first).any()
    # Reader i's aided answers do not depend on how many readers were drawn with them.
    few = simulate_readers(TRUTH, choices=DEMO_CHOICES, n_readers=5, seed=14)
    assert (aided(few, cnn) == first[:5]).all()
    # ... nor on the others in the list.
    assert (aided(readers[3:4], cnn)[0] == first[3]).all()


def test_refuses_answers_that_do_not_fit_the_cases(readers):
    with pytest.raises(ValueError, match="one answer per case"):
        aided(readers[:2], cnn_with_accuracy(0.7)[:-1])
    with pytest.raises(ValueError, match=r"labels not among choices: \['XX'\]"):
        aided(readers[:2], ["XX", *cnn_with_accuracy(0.7)[1:]])
    short = simulate_readers(TRUTH[:8], choices=DEMO_CHOICES, n_readers=1, seed=14)
    with pytest.raises(ValueError, match="has not answered every case"):
        aided(short, cnn_with_accuracy(0.7))
