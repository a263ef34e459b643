"""Tests for the synthetic demo images and simulated readers (pure numpy + Pillow)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from demo.images import (
    CLINICAL_SIZE,
    DEMO_CHOICES,
    DERMOSCOPIC_SIZE,
    add_watermark,
    make_case_images,
)
from demo.readers import (
    READER_LEVELS,
    simulate_reader_answers,
    simulate_reader_profiles,
    simulate_readers,
)

SEED = 11


@pytest.fixture(scope="module")
def per_class():
    """One case per class, all from the same seed: same skin tone, lesion size and shape,
    so whatever differs between the classes comes from the class. (16 images.)"""
    return {code: make_case_images(code, rng=np.random.default_rng(SEED)) for code in DEMO_CHOICES}


def _pixels(img) -> np.ndarray:
    return np.asarray(img, dtype=np.float64)


# --------------------------------------------------------------------------- images


def test_sizes_and_modes(per_class):
    for clinical, dermoscopic in per_class.values():
        assert clinical.mode == dermoscopic.mode == "RGB"
        assert clinical.size == CLINICAL_SIZE == (640, 480)
        assert dermoscopic.size == DERMOSCOPIC_SIZE == (600, 600)


def test_same_seed_same_bytes_different_seed_differs(per_class):
    clinical, dermoscopic = make_case_images("MN", rng=np.random.default_rng(SEED))
    assert clinical.tobytes() == per_class["MN"][0].tobytes()
    assert dermoscopic.tobytes() == per_class["MN"][1].tobytes()
    other_c, other_d = make_case_images("MN", rng=np.random.default_rng(SEED + 1))
    assert other_c.tobytes() != clinical.tobytes()
    assert other_d.tobytes() != dermoscopic.tobytes()


def test_successive_cases_from_one_generator_differ():
    rng = np.random.default_rng(3)
    first = make_case_images("Pso", rng=rng)
    second = make_case_images("Pso", rng=rng)
    for a, b in zip(first, second, strict=True):
        assert np.abs(_pixels(a) - _pixels(b)).mean() > 5


def test_unknown_code_is_rejected():
    with pytest.raises(ValueError, match="unknown demo diagnosis"):
        make_case_images("LP", rng=np.random.default_rng(0))


def test_dermoscopic_has_dark_circular_vignette(per_class):
    for _, dermoscopic in per_class.values():
        px = _pixels(dermoscopic).mean(axis=2)
        centre = px[200:400, 200:400].mean()
        corners = [px[:60, :60], px[:60, -60:], px[-60:, :60]]  # bottom-right: watermark
        assert all(c.mean() < 12 for c in corners)
        assert centre > 60


def test_classes_differ_in_mean_colour(per_class):
    """Mean colour (inside the dermoscope's field) differs for nearly all class pairs."""
    means = {}
    for code, (_, dermoscopic) in per_class.items():
        px = _pixels(dermoscopic)[150:450, 150:450].reshape(-1, 3)
        means[code] = px.mean(axis=0)
    pairs = list(itertools.combinations(DEMO_CHOICES, 2))
    distinct = [(a, b) for a, b in pairs if np.linalg.norm(means[a] - means[b]) > 6.0]
    assert len(distinct) >= len(pairs) - 3, sorted(set(pairs) - set(distinct))


def test_classes_differ_in_texture(per_class):
    """Colour histograms of the dermoscopic images differ between every pair of classes."""
    hists = {}
    for code, (_, dermoscopic) in per_class.items():
        q = _pixels(dermoscopic)[150:450, 150:450].reshape(-1, 3) // 64  # 4 levels per channel
        idx = (q[:, 0] * 16 + q[:, 1] * 4 + q[:, 2]).astype(int)
        hists[code] = np.bincount(idx, minlength=64) / len(idx)
    for a, b in itertools.combinations(DEMO_CHOICES, 2):
        total_variation = 0.5 * np.abs(hists[a] - hists[b]).sum()
        assert total_variation > 0.1, (a, b, total_variation)


def test_clinical_lesion_differs_from_skin(per_class):
    for code, (clinical, _) in per_class.items():
        px = _pixels(clinical)
        spread = px.reshape(-1, 3).std(axis=0).sum()
        assert spread > 10, code


def test_watermark_is_drawn_in_the_corner_only():
    marked = make_case_images("SK", rng=np.random.default_rng(5))
    plain = make_case_images("SK", rng=np.random.default_rng(5), watermark=False)
    for with_mark, without in zip(marked, plain, strict=True):
        diff = np.abs(_pixels(with_mark) - _pixels(without)).sum(axis=2)
        w, h = with_mark.size
        ys, xs = np.nonzero(diff)
        assert len(ys) > 100  # the text is really there
        assert ys.min() > 0.85 * h and xs.min() > 0.6 * w  # ...in the bottom-right corner
        assert (xs.max() - xs.min()) < 0.3 * w  # ...and small
        # Legible: light text on a darker box.
        region = _pixels(with_mark)[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        lum = region.mean(axis=2)
        assert lum.max() > 200 and np.median(lum) < 130


def test_add_watermark_keeps_size_and_mode():
    from PIL import Image

    img = Image.new("RGB", (300, 200), (255, 255, 255))
    out = add_watermark(img)
    assert out.size == img.size and out.mode == "RGB"
    assert out.tobytes() != img.tobytes()


def test_generation_is_fast():
    import time

    rng = np.random.default_rng(0)
    start = time.process_time()
    for code in DEMO_CHOICES[:4]:
        make_case_images(code, rng=rng)
    per_case = (time.process_time() - start) / 4
    assert per_case < 0.4  # 200 cases well under a minute even on a slow, busy machine


# --------------------------------------------------------------------------- readers

TRUTH = [code for code in DEMO_CHOICES for _ in range(25)]


@pytest.fixture(scope="module")
def readers():
    return simulate_readers(TRUTH, choices=DEMO_CHOICES, n_readers=120, seed=2021)


def test_answers_shape_labels_and_reproducibility(readers):
    answers = simulate_reader_answers(TRUTH, choices=DEMO_CHOICES, n_readers=120, seed=2021)
    assert answers.shape == (120, 200)
    assert set(np.unique(answers)) <= set(DEMO_CHOICES)
    assert all(isinstance(a, str) for a in answers.ravel())
    again = simulate_reader_answers(TRUTH, choices=DEMO_CHOICES, n_readers=120, seed=2021)
    assert (answers == again).all()
    other = simulate_reader_answers(TRUTH, choices=DEMO_CHOICES, n_readers=120, seed=2022)
    assert (answers != other).any()
    # The answers are the readers' answers: one draw.
    assert (answers == np.array([r.answers for r in readers])).all()


def test_accuracy_is_plausible(readers):
    answers = np.array([r.answers for r in readers])
    truth = np.array(TRUTH)
    per_reader = (answers == truth).mean(axis=1)
    assert 0.6 <= per_reader.mean() <= 0.75
    assert per_reader.std() > 0.04  # readers differ
    for code in DEMO_CHOICES:
        acc = (answers[:, truth == code] == code).mean()
        assert 0.4 <= acc <= 0.92, (code, acc)
    # Inflammatory diseases are harder than naevi and warts.
    acc = {c: (answers[:, truth == c] == c).mean() for c in DEMO_CHOICES}
    assert min(acc["MN"], acc["VW"]) > max(acc["EAD"], acc["SD"])


def test_mistakes_favour_look_alike_classes(readers):
    answers = np.array([r.answers for r in readers])
    truth = np.array(TRUTH)
    wrong_sd = answers[:, truth == "SD"]
    wrong_sd = wrong_sd[wrong_sd != "SD"]
    inflammatory = np.isin(wrong_sd, ["EAD", "Pso", "Rosa"]).mean()
    assert inflammatory > 0.5  # 3 of the 7 wrong labels, but most of the mistakes
    wrong_mn = answers[:, truth == "MN"]
    wrong_mn = wrong_mn[wrong_mn != "MN"]
    assert np.isin(wrong_mn, ["SK", "BCC"]).mean() > 0.4


def test_skill_and_profiles_are_correlated_with_accuracy(readers):
    truth = np.array(TRUTH)
    acc = np.array([(r.answers == truth).mean() for r in readers])
    skill = np.array([r.skill for r in readers])
    years = np.array([r.years for r in readers])
    hours = np.array([r.dermoscopy_hours for r in readers])
    assert np.corrcoef(skill, acc)[0, 1] > 0.6
    assert np.corrcoef(years, acc)[0, 1] > 0.3
    assert np.corrcoef(np.log(hours), acc)[0, 1] > 0.3
    levels = np.array([r.level for r in readers])
    assert set(levels) == set(READER_LEVELS)
    assert acc[levels == "chief"].mean() > acc[levels == "resident"].mean()
    for r in readers:
        assert r.years >= 1 and r.dermoscopy_hours >= 0


def test_profiles_match_readers_and_are_prefix_stable(readers):
    profiles = simulate_reader_profiles(120, seed=2021)
    assert profiles == [r.profile() for r in readers]
    assert set(profiles[0]) == {"level", "years", "dermoscopy_hours"}
    # Reader i does not depend on how many readers are simulated.
    assert simulate_reader_profiles(10, seed=2021) == profiles[:10]
    few = simulate_readers(TRUTH, choices=DEMO_CHOICES, n_readers=5, seed=2021)
    for a, b in zip(few, readers, strict=False):
        assert (a.answers == b.answers).all() and a.skill == b.skill


def test_other_choices_and_validation():
    answers = simulate_reader_answers(["a", "b", "b"], choices=["a", "b"], n_readers=3, seed=0)
    assert answers.shape == (3, 3) and set(answers.ravel()) <= {"a", "b"}
    assert simulate_reader_answers(TRUTH, choices=DEMO_CHOICES, n_readers=0, seed=0).shape == (
        0,
        200,
    )
    with pytest.raises(ValueError, match="not among choices"):
        simulate_reader_answers(["LP"], choices=DEMO_CHOICES, n_readers=2, seed=0)
    with pytest.raises(ValueError, match="distinct"):
        simulate_reader_answers(["MN"], choices=["MN", "MN"], n_readers=2, seed=0)


def test_module_imports_only_numpy_pillow_and_stdlib():
    import ast
    import inspect

    from demo import images, readers

    modules = set()
    for module in (images, readers):
        for node in ast.walk(ast.parse(inspect.getsource(module))):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                modules.add(node.module.split(".")[0])
    stdlib = {"__future__", "collections", "contextlib", "dataclasses", "functools", "math"}
    assert modules <= stdlib | {"statistics", "numpy", "PIL", "threadpoolctl"}, modules
