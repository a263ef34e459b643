"""The synthetic demo study: 200 generated cases shaped like the reference study, an
admin, a demo reader and simulated readers whose answers fill the progress and
statistics pages.

Everything is derived from one seed: the same seed gives the same cases (identifiers,
diagnoses, image bytes) and the same simulated answers. The images are written as a
normal case bundle and go through the real importer.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import secrets
import tempfile
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from django.apps import apps
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from cases.importing import cases_import
from cases.importing.manifest import OPTIONAL_COLUMNS, REQUIRED_COLUMNS
from cases.models import (
    Answer,
    AnswerChange,
    CaseImage,
    Diagnosis,
    Enrolment,
    ReaderProfile,
    Study,
    synthetic_study_erasure,
)
from cases.services import enrolment_create
from demo.images import DEMO_CHOICES, make_case_images
from demo.readers import simulate_readers
from readerstudy.storage import folder_delete

DEMO_SLUG = "demo"
CASES_PER_CLASS = 25
DEFAULT_SEED = 0
DEMO_DESCRIPTION = (
    "A synthetic study shaped like the reference reader study (Zhu et al., Front. Med. "
    "2021): 8 diagnoses, 25 cases each, a clinical photo and a dermoscopic image per case. "
    "Every image is generated, not a patient photo; the readers' answers already in it are "
    "simulated."
)
# The study's admin notes (never shown to readers) record the seed it was built from, so
# that a later `demo --seed N` can say that the existing study is another one.
_SEED_NOTE = "Built from seed {seed}; manage.py demo --seed {seed} builds the same study."
_SEED_NOTE_PATTERN = re.compile(r"Built from seed (\d+);")
CONSENT_TEXT = (
    "This is a demonstration of the reader-study platform. The images are synthetic. "
    "Your answers are stored under a pseudonym and used only to demonstrate the statistics."
)
DEMO_TITLE_ZH = "合成演示：8 类皮肤镜读片研究"  # noqa: RUF001
DEMO_DESCRIPTION_ZH = (
    "一个仿照参考读片研究（Zhu 等，Front. Med. 2021）构建的合成研究：8 种诊断，每种 25 个"  # noqa: RUF001
    "病例，每个病例有一张临床照片和一张皮肤镜图像。所有图像均为生成图像，并非患者照片；"  # noqa: RUF001
    "研究中已有的读片者答案为模拟数据。"
)
CONSENT_TEXT_ZH = (
    "这是读片研究平台的演示。图像均为合成图像。您的答案以化名保存，仅用于演示统计分析。"  # noqa: RUF001
)


@dataclass(frozen=True)
class DemoCase:
    case_id: str
    code: str
    index: int


@dataclass(frozen=True)
class DemoResult:
    study: Study
    created: bool
    admin_username: str
    admin_password: str
    reader_username: str
    reader_password: str
    simulated_readers: int
    seed: int | None  # the seed the study was built from; None when it does not say


def demo_cases(*, seed: int, per_class: int = CASES_PER_CLASS) -> list[DemoCase]:
    """The demo's cases in study order: classes interleaved by a seeded shuffle, so a
    case's position says nothing about its diagnosis."""
    codes = [code for code in DEMO_CHOICES for _ in range(per_class)]
    order = np.random.default_rng([seed, 0]).permutation(len(codes))
    return [
        DemoCase(case_id=f"demo-{i + 1:03d}", code=codes[j], index=i) for i, j in enumerate(order)
    ]


def demo_case_images(case: DemoCase, *, seed: int) -> tuple[bytes, bytes]:
    """JPEG bytes (clinical, dermoscopic) of one demo case; each case has its own
    random stream, so any case can be regenerated alone."""
    rng = np.random.default_rng([seed, 1, case.index])
    out = []
    for image in make_case_images(case.code, rng=rng):
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        out.append(buffer.getvalue())
    return out[0], out[1]


def write_demo_bundle(
    folder: Path, cases: list[DemoCase], *, seed: int, progress: bool = False
) -> None:
    """A case bundle (cases.csv, images/, study.json) of ``cases`` with the demo's
    options, for the importer; also what the load test imports."""
    (folder / "images").mkdir(parents=True)
    with open(folder / "cases.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)
        meta_rng = np.random.default_rng([seed, 2])
        sites = ["face", "scalp", "trunk", "back", "arm", "leg", "hand", "foot"]
        # Each case's images depend only on the case and the seed: made in parallel, one
        # process a core, in order, the same bytes as one at a time.
        with ProcessPoolExecutor(max_workers=min(os.cpu_count() or 1, 4)) as pool:
            made = pool.map(partial(demo_case_images, seed=seed), cases, chunksize=4)
            made = zip(cases, made, strict=True)
            for case, (clinical, dermoscopic) in _progress(
                made, progress, "generating images", total=len(cases)
            ):
                (folder / f"images/{case.case_id}-c.jpg").write_bytes(clinical)
                (folder / f"images/{case.case_id}-d.jpg").write_bytes(dermoscopic)
                writer.writerow(
                    [
                        case.case_id,
                        case.code,
                        f"images/{case.case_id}-c.jpg",
                        f"images/{case.case_id}-d.jpg",
                        int(meta_rng.integers(8, 85)),
                        "F" if meta_rng.random() < 0.5 else "M",
                        sites[int(meta_rng.integers(0, 8))],
                        "yes"
                        if case.code in {"BCC", "SK", "MN"} and meta_rng.random() < 0.6
                        else "",
                    ]
                )
    (folder / "study.json").write_text(
        json.dumps(
            {
                "title": "Synthetic demo: 8-class dermoscopy reader study",
                "description": DEMO_DESCRIPTION,
                "admin_notes": _SEED_NOTE.format(seed=seed),
                "choices": list(DEMO_CHOICES),
                "shuffle_cases": True,
                "show_clinical_image": True,
                "allow_answer_changes": False,
                "show_feedback": True,
                "show_model_feedback": True,
                "ask_confidence": True,
                "consent_text": CONSENT_TEXT,
                "consent_version": "demo-1",
                "title_zh": DEMO_TITLE_ZH,
                "description_zh": DEMO_DESCRIPTION_ZH,
                "consent_text_zh": CONSENT_TEXT_ZH,
                "is_synthetic": True,
            }
        )
    )


def demo_seed(study: Study) -> int | None:
    """The seed ``study`` was built from, as its admin notes record it; None when they do
    not say (edited, or built by an older version)."""
    match = _SEED_NOTE_PATTERN.search(study.admin_notes)
    return int(match.group(1)) if match else None


def _credentials_file(data_dir: Path) -> Path:
    return data_dir / "demo-credentials.json"


def _ensure_user(username: str, *, staff: bool, known: dict[str, str]) -> str:
    """Create or reuse a demo user; return its password (kept in the data dir)."""
    User = get_user_model()
    user = User.objects.filter(username=username).first()
    password = known.get(username)
    if user is None:
        user = User(username=username, is_staff=staff, is_superuser=staff)
    if password is None or not user.check_password(password):
        password = secrets.token_urlsafe(9)
        user.set_password(password)
    user.is_active = True
    user.save()
    return password


def _simulate(study: Study, *, seed: int, n_readers: int, cases: list[DemoCase]) -> None:
    by_id = {c.source_id: c for c in study.cases.all()}
    condition = study.conditions.order_by("position").first()  # a one-condition study
    truth = [c.code for c in cases]
    readers = simulate_readers(truth, choices=DEMO_CHOICES, n_readers=n_readers, seed=seed)
    diagnoses = {d.code: d for d in Diagnosis.objects.filter(code__in=DEMO_CHOICES)}
    User = get_user_model()
    time_rng = np.random.default_rng([seed, 3])
    for sim in readers:
        user = User.objects.create(username=f"sim-reader-{sim.index + 1:03d}", is_active=False)
        user.set_unusable_password()
        user.save(update_fields=["password"])
        ReaderProfile.objects.create(
            user=user,
            level=sim.level,
            years_in_dermatology=sim.years,
            dermoscopy_training_hours=sim.dermoscopy_hours,
            board_certified=True,
            hospital_tier=ReaderProfile.HospitalTier.TERTIARY,
            region="synthetic",
            is_simulated=True,
        )
        enrolment = enrolment_create(
            study=study, reader=user, seed=seed * 1000 + sim.index, consent=True
        )
        seconds = np.round(time_rng.lognormal(mean=2.4, sigma=0.5, size=len(cases)), 1)
        correct = sim.answers == np.array(truth, dtype=object)
        confidence = np.clip(
            np.where(correct, 4, 2) + time_rng.integers(-1, 2, size=len(cases)), 1, 5
        )
        Answer.objects.bulk_create(
            Answer(
                enrolment=enrolment,
                case=by_id[case.case_id],
                condition=condition,
                diagnosis=diagnoses[str(sim.answers[k])],
                seconds=float(seconds[k]),
                confidence=int(confidence[k]),
            )
            for k, case in enumerate(cases)
        )
        # after its consent and its answers (the time stamps in that order, as a reader's)
        Enrolment.objects.filter(pk=enrolment.pk).update(finished_at=timezone.now())


# Rows of other apps that protect the demo study or its cases from deletion: the demo
# models' runs and predictions, reports. Named, not imported, so that the reset works
# with whichever of these apps are installed.
_DEPENDENTS = (
    ("inference.Prediction", "case__study"),
    ("inference.InferenceRun", "study"),
    ("analysis.AnalysisReport", "study"),
)


def demo_reset(*, slug: str = DEMO_SLUG) -> bool:
    """Delete the demo study with its cases, images, enrolments, invitations, simulated
    readers, and what other apps made of it (CNN runs and predictions, reports).

    Only a synthetic study (``is_synthetic``, which its data then is too) is ever
    deleted: research data is otherwise never deleted, and the guards of its models (and
    on PostgreSQL the database) let this erasure through for that one study only. Its
    audit events stay."""
    study = Study.objects.filter(slug=slug, is_synthetic=True).first()
    if study is None:
        return False
    files, folders = [], []
    with transaction.atomic(), synthetic_study_erasure(study=study):
        for label, lookup in _DEPENDENTS:
            if not apps.is_installed(label.split(".")[0]):
                continue
            rows = apps.get_model(label).objects.filter(**{lookup: study})
            for row in rows:
                files += [
                    getattr(row, f.name)
                    for f in row._meta.fields
                    if f.get_internal_type() == "FileField"
                ]
                if label == "analysis.AnalysisReport":
                    folders.append(row.folder)
            rows.delete()
        AnswerChange.objects.filter(answer__enrolment__study=study).delete()
        Answer.objects.filter(enrolment__study=study).delete()
        enrolments = Enrolment.objects.filter(study=study)
        simulated = list(
            enrolments.filter(reader__reader_profile__is_simulated=True).values_list(
                "reader_id", flat=True
            )
        )
        enrolments.delete()
        study.invitations.all().delete()
        ReaderProfile.objects.filter(user_id__in=simulated).delete()
        get_user_model().objects.filter(pk__in=simulated).delete()
        images = list(CaseImage.objects.filter(case__study=study))
        files += [f for image in images for f in (image.original, image.web, image.thumbnail)]
        CaseImage.objects.filter(case__study=study).delete()
        study.cases.all().delete()
        study.delete()  # its choices and conditions with it
        transaction.on_commit(lambda: _delete_files(files, folders))
    return True


def _delete_files(files: list, folders: list[str]) -> None:
    for file in files:
        if file:  # an optional file field left empty
            file.storage.delete(file.name)
    for folder in folders:
        folder_delete(folder)


def demo_build(
    *,
    seed: int | None = None,
    n_readers: int = 30,
    data_dir: Path,
    per_class: int = CASES_PER_CLASS,
    progress: bool = False,
) -> DemoResult:
    """Build the demo study if it is not there yet, and the demo users in any case.

    ``seed`` None builds from :data:`DEFAULT_SEED`. Safe to run again: an existing demo
    study is kept as it is, whatever ``seed`` says (``demo_reset`` first to rebuild it
    with another seed); the result's ``seed`` is the one it was built from.
    ``per_class`` below 25 makes a smaller study, for tests.
    """
    study = Study.objects.filter(slug=DEMO_SLUG).first()
    created = study is None
    if created:
        seed = DEFAULT_SEED if seed is None else seed
        cases = demo_cases(seed=seed, per_class=per_class)
        with tempfile.TemporaryDirectory(prefix="readerstudy-demo-") as tmp:
            folder = Path(tmp) / "bundle"
            write_demo_bundle(folder, cases, seed=seed, progress=progress)
            with transaction.atomic():
                study = cases_import(slug=DEMO_SLUG, source=folder).study
                study.status = Study.Status.OPEN
                study.save(update_fields=["status"])
                _simulate(study, seed=seed, n_readers=n_readers, cases=cases)
    credentials_path = _credentials_file(data_dir)
    known = json.loads(credentials_path.read_text()) if credentials_path.exists() else {}
    admin_password = _ensure_user("admin", staff=True, known=known)
    reader_password = _ensure_user("reader", staff=False, known=known)
    enrolment_create(study=study, reader=get_user_model().objects.get(username="reader"))
    data_dir.mkdir(parents=True, exist_ok=True)
    credentials_path.write_text(json.dumps({"admin": admin_password, "reader": reader_password}))
    credentials_path.chmod(0o600)
    return DemoResult(
        study=study,
        created=created,
        admin_username="admin",
        admin_password=admin_password,
        reader_username="reader",
        reader_password=reader_password,
        simulated_readers=Enrolment.objects.filter(
            study=study, reader__reader_profile__is_simulated=True
        ).count(),
        seed=seed if created else demo_seed(study),
    )


def _progress(items: Iterable, enabled: bool, desc: str, total: int | None = None) -> Iterator:
    if not enabled:
        return iter(items)
    from tqdm import tqdm

    return iter(tqdm(items, desc=desc, unit="case", total=total))
