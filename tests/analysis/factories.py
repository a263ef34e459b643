"""Builders for the analysis tests: synthetic answer and prediction tables, a small
study in the database, the hand-computed example and the reference-data folder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

CHOICES = ["MN", "SK", "BCC", "EAD"]


def synthetic_tables(*, n_readers=6, n_cases=24, n_models=2, seed=0, choices=CHOICES):
    """(answers, predictions): readers right ~70% of the time, models with probabilities
    that favour the truth; reader attribute ``level``; the last reader skips 4 cases."""
    rng = np.random.default_rng(seed)
    c = len(choices)
    truth = np.arange(n_cases) % c
    cases = [f"case{k:03d}" for k in range(n_cases)]
    rows = []
    for r in range(n_readers):
        for k in range(n_cases):
            if r == n_readers - 1 and k >= n_cases - 4:
                continue
            answer = truth[k] if rng.random() < 0.7 else rng.integers(c)
            rows.append(
                (
                    f"R{r}",
                    cases[k],
                    choices[truth[k]],
                    choices[answer],
                    "chief" if r % 2 else "resident",
                )
            )
    answers = pd.DataFrame(rows, columns=["reader", "case", "truth", "answer", "level"])
    frames = []
    for m in range(n_models):
        probs = rng.dirichlet(np.ones(c), n_cases)
        probs[np.arange(n_cases), truth] += 0.5 + 0.2 * m
        probs /= probs.sum(axis=1, keepdims=True)
        frame = pd.DataFrame(
            {
                "model": f"cnn-{m}",
                "case": cases,
                "truth": np.array(choices)[truth],
                "answer": np.array(choices)[probs.argmax(axis=1)],
            }
        )
        for j, code in enumerate(choices):
            frame[f"prob_{code}"] = probs[:, j]
        frames.append(frame)
    return answers, pd.concat(frames, ignore_index=True)


def finished_flag_tables(*, n_cases=16, seed=1):
    """(answers with a ``finished`` column, predictions of one model) on CHOICES: R0-R3
    answered every case and finished; R4 answered every case but never confirmed the
    end (a study that allows changes); R5 answered half the cases and has not finished."""
    answers, predictions = synthetic_tables(n_readers=6, n_cases=n_cases, n_models=1, seed=seed)
    answers = answers[
        ~((answers["reader"] == "R5") & (answers["case"] >= f"case{n_cases // 2:03d}"))
    ]
    answers = answers.assign(finished=~answers["reader"].isin(["R4", "R5"]))
    return answers.reset_index(drop=True), predictions


def no_positive_tables(*, n_readers=4, n_cases=30, seed=2):
    """(answers, predictions) on CHOICES where no case is EAD (the truths cycle through
    MN, SK, BCC) but readers and the model answer EAD now and then; everyone answers every
    case. The one-vs-rest table of EAD has no positive case."""
    rng = np.random.default_rng(seed)
    present = ["MN", "SK", "BCC"]
    cases = [f"case{k:03d}" for k in range(n_cases)]
    truth = [present[k % 3] for k in range(n_cases)]

    def answer(t):
        u = rng.random()
        return t if u < 0.6 else ("EAD" if u < 0.75 else present[rng.integers(3)])

    answers = pd.DataFrame(
        [
            (f"R{r}", c, t, answer(t))
            for r in range(n_readers)
            for c, t in zip(cases, truth, strict=True)
        ],
        columns=["reader", "case", "truth", "answer"],
    )
    predictions = pd.DataFrame(
        {"model": "cnn", "case": cases, "truth": truth, "answer": [answer(t) for t in truth]}
    )
    return answers, predictions


def build_db_study(
    *,
    slug="small",
    n_readers=3,
    per_class=4,
    trained=False,
    embeddings=True,
    unfinished=0,
    gradcam: bytes | None = None,
):
    """A study with MN/SK/BCC, ``per_class`` cases each, readers right ~2/3 of the time
    and one registered model with probabilities (and embeddings). Every reader answers
    every case and has finished, except the last ``unfinished`` ones, who answered the
    first half of the cases and have not finished."""
    from django.core.files.base import ContentFile
    from django.utils import timezone

    from cases.models import Answer, Diagnosis, Enrolment
    from inference.models import Prediction, RegisteredModel
    from tests.factories import CaseFactory, ReaderProfileFactory, UserFactory, enrol, make_study

    codes = ["MN", "SK", "BCC"]
    study = make_study(slug=slug, choices=codes, is_synthetic=True)
    diagnoses = {d.code: d for d in Diagnosis.objects.filter(code__in=codes)}
    cases = [
        CaseFactory(study=study, diagnosis=diagnoses[codes[k % 3]], with_images=False)
        for k in range(3 * per_class)
    ]
    rng = np.random.default_rng(0)
    condition = study.conditions.get()  # a one-condition study
    for r in range(n_readers):
        user = UserFactory(username=f"{slug}-reader{r}")
        ReaderProfileFactory(user=user)
        enrolment = enrol(study=study, user=user, seed=r + 1)
        finished = r < n_readers - unfinished
        Answer.objects.bulk_create(
            Answer(
                enrolment=enrolment,
                case=case,
                condition=condition,
                diagnosis=case.diagnosis
                if rng.random() < 0.67
                else diagnoses[codes[rng.integers(3)]],
                seconds=4.0,
            )
            for case in (cases if finished else cases[: len(cases) // 2])
        )
        if finished:
            Enrolment.objects.filter(pk=enrolment.pk).update(finished_at=timezone.now())
    model = RegisteredModel.objects.create(
        name=f"{slug}-cnn",
        arch="efficientnet_b4",
        classes=codes,
        preprocessing={},
        trained=trained,
        weights_source="random",
    )
    for case in cases:
        probs = rng.dirichlet(np.ones(3))
        probs[codes.index(case.diagnosis.code)] += 0.6
        probs /= probs.sum()
        prediction = Prediction(
            model=model,
            case=case,
            choice=diagnoses[codes[int(probs.argmax())]],
            probabilities=dict(zip(codes, probs.tolist(), strict=True)),
            choice_probabilities=dict(zip(codes, probs.tolist(), strict=True)),
            embedding=rng.normal(size=6).astype("<f4").tobytes() if embeddings else None,
        )
        if gradcam is not None:  # the same Grad-CAM map (PNG bytes) for every case
            prediction.gradcam.save("cam.png", ContentFile(gradcam), save=False)
        prediction.save(force_insert=True)
    return study


# Hand example: cases c1..c4 with truth A A B B; answers
#   r1: A A B B (top-1 1.00, sensitivity A 1.0)
#   r2: A B B B (top-1 0.75, sensitivity A 0.5)
#   r3: B B B A (top-1 0.25, sensitivity A 0.0)
HAND = pd.DataFrame(
    [
        (reader, f"c{k + 1}", truth, answer)
        for reader, said in (("r1", "AABB"), ("r2", "ABBB"), ("r3", "BBBA"))
        for k, (truth, answer) in enumerate(zip("AABB", said, strict=True))
    ],
    columns=["reader", "case", "truth", "answer"],
)


# t_{0.975, 2} in closed form: (2p - 1) / sqrt(2 p (1 - p)) for 2 degrees of freedom
T_2 = 0.95 / np.sqrt(2 * 0.975 * 0.025)


ENV_VAR = "READERSTUDY_REFERENCE_DATA"


def reference_data_dir() -> Path:
    """The reference-data folder: $READERSTUDY_REFERENCE_DATA or ../shared/reference-data."""
    configured = os.environ.get(ENV_VAR)
    folder = (
        Path(configured)
        if configured
        else Path(__file__).resolve().parents[3] / "shared" / "reference-data"
    )
    if not folder.is_dir():
        pytest.fail(f"reference data folder {folder} is missing (set {ENV_VAR})")
    return folder


def build_run_study(*, slug="runs", per_class=3, dim=8, status="done"):
    """(study, run): a study with MN/SK/BCC, ``per_class`` cases each, no readers, and
    one model whose inference run (``status``) predicted every case, with an embedding
    of ``dim`` floats clustered by class, as a worker stores them."""
    from cases.models import Diagnosis
    from inference.models import InferenceRun, Prediction, RegisteredModel
    from tests.factories import CaseFactory, make_study

    codes = ["MN", "SK", "BCC"]
    study = make_study(slug=slug, choices=codes, is_synthetic=True)
    diagnoses = {d.code: d for d in Diagnosis.objects.filter(code__in=codes)}
    cases = [
        CaseFactory(study=study, diagnosis=diagnoses[codes[k % 3]], with_images=False)
        for k in range(3 * per_class)
    ]
    model = RegisteredModel.objects.create(
        name=f"{slug}-cnn", arch="efficientnet_b4", classes=codes, preprocessing={},
        weights_source="random",
    )  # fmt: skip
    run = InferenceRun.objects.create(
        model=model, study=study, status=status, total=len(cases), done=len(cases)
    )
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3, (3, dim))
    for case in cases:
        k = codes.index(case.diagnosis.code)
        probs = np.full(3, 0.2)
        probs[k] = 0.6
        Prediction.objects.create(
            model=model,
            case=case,
            run=run,
            choice=diagnoses[codes[k]],
            probabilities=dict(zip(codes, probs.tolist(), strict=True)),
            choice_probabilities=dict(zip(codes, probs.tolist(), strict=True)),
            embedding=(centres[k] + rng.normal(size=dim)).astype("<f4").tobytes(),
        )
    return study, run


READER_LEVELS = ("resident", "attending", "chief")


def condition_tables(
    *,
    design="sequential",
    n_readers=8,
    n_cases=32,
    seed=0,
    choices=CHOICES,
    cnn_accuracy=0.75,
    unfinished=0,
):
    """(answers of two reading conditions, the CNN's predictions): ``unaided`` then
    ``aided`` (the CNN's answer shown), the columns of ANSWERS_TABLE_COLUMNS that a file
    carries, in the study's order (the unaided condition's rows first).

    Each reader has a skill (their chance of a right answer unaided, 0.45 to 0.85, the
    least skilled first) and, from it, a level and years in dermatology. The CNN is
    right on a case with probability ``cnn_accuracy``, else it names another class.
    With the CNN's answer shown, a reader who would have answered otherwise takes the
    CNN's answer with a probability that falls with their skill (0.8 - 0.7 skill).

    ``design="sequential"``: one session, the aided answer starts from the unaided one.
    ``design="crossover"``: even readers read unaided in session 1 and aided in session
    2, odd readers the reverse, each read drawn afresh (after the washout). The last
    ``unfinished`` readers read only the first half of the cases in their second
    session and have not finished.
    """
    rng = np.random.default_rng(seed)
    c = len(choices)
    truth = np.arange(n_cases) % c
    cases = [f"case{k:03d}" for k in range(n_cases)]
    wrong = (truth + rng.integers(1, c, n_cases)) % c
    cnn = np.where(rng.random(n_cases) < cnn_accuracy, truth, wrong)
    cnn_probability = np.round(rng.uniform(0.4, 0.99, n_cases), 3)
    skills = np.linspace(0.45, 0.85, n_readers)
    rows = []
    for r, skill in enumerate(skills):
        reader = f"R{r}"
        level = READER_LEVELS[min(int(3 * (skill - 0.45) / 0.401), 2)]
        years = round(1 + 25 * (skill - 0.45) + int(rng.integers(0, 3)))
        finished = r < n_readers - unfinished
        follow = 0.8 - 0.7 * skill

        def own(k, skill=skill):
            return truth[k] if rng.random() < skill else (truth[k] + rng.integers(1, c)) % c

        unaided = np.array([own(k) for k in range(n_cases)])
        if design == "sequential":
            start = unaided
            sessions = {"unaided": 1, "aided": 1}
        else:
            start = np.array([own(k) for k in range(n_cases)])
            sessions = {"unaided": 1, "aided": 2} if r % 2 == 0 else {"unaided": 2, "aided": 1}
        takes = (start != cnn) & (rng.random(n_cases) < follow)
        aided = np.where(takes, cnn, start)
        answers = {"unaided": unaided, "aided": aided}
        first = min(sessions, key=sessions.get)
        for condition in ("unaided", "aided"):
            second = condition != first
            for k in range(n_cases):
                if second and not finished and k >= n_cases // 2:
                    continue
                said = answers[condition][k]
                changed = bool(said != answers[first][k]) if second else None
                shown = condition == "aided"
                rows.append(
                    (reader, cases[k], choices[truth[k]], choices[said], condition,
                     sessions[condition], choices[cnn[k]] if shown else "",
                     cnn_probability[k] if shown else None, changed, level, years, finished)
                )  # fmt: skip
    columns = [
        "reader", "case", "truth", "answer", "condition", "session", "ai_answer",
        "ai_top_probability", "changed", "level", "years", "finished",
    ]  # fmt: skip
    table = pd.DataFrame(rows, columns=columns)
    position = table["condition"].map({"unaided": 0, "aided": 1})
    table = table.iloc[np.lexsort((table["case"], table["reader"], position))]
    probs = np.full((n_cases, c), 0.0)
    probs[np.arange(n_cases), cnn] = cnn_probability
    rest = (1 - cnn_probability) / (c - 1)
    probs = np.where(probs == 0, rest[:, None], probs)
    predictions = pd.DataFrame(
        {
            "model": "cnn",
            "case": cases,
            "truth": np.array(choices)[truth],
            "answer": np.array(choices)[cnn],
        }
    )
    for j, code in enumerate(choices):
        predictions[f"prob_{code}"] = probs[:, j]
    return table.reset_index(drop=True), predictions
