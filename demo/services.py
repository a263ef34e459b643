"""The synthetic demo studies: 200 generated cases shaped like the reference study, an
admin, a demo reader and simulated readers whose answers fill the progress and
statistics pages. The same cases are also the AI-assisted demo study (sequential: each
case read unaided, then with the demo CNN's support), whose simulated readers follow the
CNN's answer the less often the more skilled they are (demo.readers).

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
    ReadingCondition,
    Study,
    synthetic_study_erasure,
)
from cases.services import StudyError, enrolment_create, study_open
from demo.images import DEMO_CHOICES, make_case_images
from demo.readers import simulate_aided_answers, simulate_readers
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

# The AI-assisted demo study: the same cases, read unaided and then with the support of
# the demo CNN (registered by the demo, as demo_models registers it).
AIDED_SLUG = "demo-aided"
AIDED_TITLE = "Synthetic demo: AI-assisted reading (unaided, then with the CNN)"
AIDED_TITLE_ZH = "合成演示：CNN 辅助读片（先独立阅片，再看 CNN 结果）"  # noqa: RUF001
AIDED_DESCRIPTION = (
    "The synthetic cases of the demo study (generated images, not patient photos), each "
    "read twice: unaided, then with the support of the demo's CNN (its three most probable "
    "classes, its answer and its Grad-CAM map). The CNN is UNTRAINED (random "
    "initialisation): its support is meaningless by design, never trained on real data. "
    "The readers' answers already in the study are simulated: they follow the CNN anyway, "
    "the less skilled more often, so the study shows how a poor CNN misleads readers."
)
AIDED_DESCRIPTION_ZH = (
    "与演示研究相同的合成病例（生成图像，并非患者照片），每个病例读两次：先独立阅片，"  # noqa: RUF001
    "再在演示 CNN 的辅助下阅片（其前三位概率、预测类别和 Grad-CAM 热图）。该 CNN 未经训练"  # noqa: RUF001
    "（随机初始化），其辅助结果本身没有意义，也从未用真实数据训练；研究中已有的读片者答案"  # noqa: RUF001
    "为模拟数据：模拟读片者仍会参考该 CNN，经验越少越常跟随，以展示不可靠的 CNN 如何误导读片者。"  # noqa: RUF001
)
AIDED_CONDITIONS = [
    {
        "code": ReadingCondition.DEFAULT_CODE,
        "position": 0,
        "label": "Unaided",
        "label_zh": "独立阅片",
        "shows_dermoscopic": True,
        "shows_clinical": True,
        "shows_metadata": False,
        "shows_cnn": False,
        "shows_gradcam": False,
    },
    {
        "code": "aided",
        "position": 1,
        "label": "With the CNN's support",
        "label_zh": "有CNN辅助",
        "shows_dermoscopic": True,
        "shows_clinical": True,
        "shows_metadata": False,
        "shows_cnn": True,
        "shows_gradcam": True,
    },
]
AIDED_TOP_K = 3
# The demo's reference CNN: what `demo_models` registers and runs on the demo study.
DEMO_CNN = "demo-effb4-aux-untrained"
DEMO_CNN_ARCH = "efficientnet_b4_aux"
DEMO_CNN_DESCRIPTION = (
    "UNTRAINED demo model: EfficientNet-b4 + 7 auxiliary heads, random initialisation "
    "(seeded). Its answers are meaningless by design."
)
DEMO_CNN_IMG_SIZE = 224


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
    # With ``aided``: the AI-assisted study (a draft until demo_aided_open opens it)
    aided_study: Study | None = None
    aided_created: bool = False


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
    folder: Path, cases: list[DemoCase], *, seed: int, progress: bool = False, aided: bool = False
) -> None:
    """A case bundle (cases.csv, images/, study.json) of ``cases`` with the demo's
    options (``aided``: the AI-assisted study's), for the importer; also what the load
    test imports."""
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
    write_demo_study_file(folder, seed=seed, aided=aided)


def write_demo_study_file(folder: Path, *, seed: int, aided: bool = False) -> None:
    """The bundle's study.json: the demo study's settings, or (``aided``) those of the
    AI-assisted study, sequential, on the same cases."""
    settings = {
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
    if aided:
        settings |= {
            "title": AIDED_TITLE,
            "title_zh": AIDED_TITLE_ZH,
            "description": AIDED_DESCRIPTION,
            "description_zh": AIDED_DESCRIPTION_ZH,
            "consent_version": "demo-aided-1",
            # a sequential read's unaided answer is final (the CNN's support follows it)
            "allow_answer_changes": False,
            "design": Study.Design.SEQUENTIAL.value,
            "conditions": AIDED_CONDITIONS,
        }
    (folder / "study.json").write_text(json.dumps(settings))


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


def _simulate(
    study: Study,
    *,
    seed: int,
    n_readers: int,
    cases: list[DemoCase],
    cnn_answers: list[str] | None = None,
    username: str = "sim-reader-{:03d}",
) -> None:
    """Simulated readers enrolled in ``study``, each with an answer to every case (its
    first condition), and, given the CNN's answer to each case (``cnn_answers``, in the
    order of ``cases``), a second one with its support (its second condition): a
    sequential read. Each enrolment ends finished."""
    by_id = {c.source_id: c for c in study.cases.all()}
    conditions = list(study.conditions.order_by("position"))
    truth = [c.code for c in cases]
    readers = simulate_readers(truth, choices=DEMO_CHOICES, n_readers=n_readers, seed=seed)
    aided = None
    if cnn_answers is not None:
        aided = simulate_aided_answers(
            readers, truth=truth, cnn_answers=cnn_answers, choices=DEMO_CHOICES, seed=seed
        )
        cnn = np.array(cnn_answers, dtype=object)
        aided_rng = np.random.default_rng([seed, 4])
    diagnoses = {d.code: d for d in Diagnosis.objects.filter(code__in=DEMO_CHOICES)}
    User = get_user_model()
    time_rng = np.random.default_rng([seed, 3])
    for row, sim in enumerate(readers):
        user = User.objects.create(username=username.format(sim.index + 1), is_active=False)
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
        answers = [
            [
                Answer(
                    enrolment=enrolment,
                    case=by_id[case.case_id],
                    condition=conditions[0],
                    diagnosis=diagnoses[str(sim.answers[k])],
                    seconds=float(seconds[k]),
                    confidence=int(confidence[k]),
                )
            ]
            for k, case in enumerate(cases)
        ]
        if aided is not None:
            final = aided[row]
            changed = final != sim.answers
            # A second look with the CNN's answer beside the image: shorter, longer
            # where the reader changes their mind; surer where they agree with the CNN.
            aided_seconds = np.round(
                aided_rng.lognormal(mean=1.6, sigma=0.5, size=len(cases)) * (1 + 0.5 * changed),
                1,
            )
            aided_confidence = np.clip(
                np.where(final == np.array(truth, dtype=object), 4, 2)
                + (final == cnn)
                + aided_rng.integers(-1, 1, size=len(cases)),
                1,
                5,
            )
            for k, case in enumerate(cases):
                answers[k].append(
                    Answer(
                        enrolment=enrolment,
                        case=by_id[case.case_id],
                        condition=conditions[1],
                        diagnosis=diagnoses[str(final[k])],
                        seconds=float(aided_seconds[k]),
                        confidence=int(aided_confidence[k]),
                    )
                )
        # case by case (in a sequential read, the unaided answer and then the aided one),
        # so that the answers' time stamps are in that order
        Answer.objects.bulk_create(answer for per_case in answers for answer in per_case)
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
    aided: bool = False,
) -> DemoResult:
    """Build the demo study if it is not there yet, and the demo users in any case.

    ``seed`` None builds from :data:`DEFAULT_SEED`. Safe to run again: an existing demo
    study is kept as it is, whatever ``seed`` says (``demo_reset`` first to rebuild it
    with another seed); the result's ``seed`` is the one it was built from.
    ``per_class`` below 25 makes a smaller study, for tests.

    ``aided`` also imports the AI-assisted study (:data:`AIDED_SLUG`) when it is not
    there yet, as a draft, from the same bundle: the demo study's cases, images and seed
    (those it records, where it is kept). :func:`demo_aided_open` then runs the demo CNN
    on it, opens it and simulates its readers.
    """
    study = Study.objects.filter(slug=DEMO_SLUG).first()
    created = study is None
    aided_study = Study.objects.filter(slug=AIDED_SLUG).first() if aided else None
    aided_created = aided and aided_study is None
    if created:
        seed = DEFAULT_SEED if seed is None else seed
        bundle_seed = seed
    else:
        # The AI-assisted study reads the kept demo study's cases: its seed and its size.
        recorded = demo_seed(study)
        bundle_seed = recorded if recorded is not None else DEFAULT_SEED if seed is None else seed
        n_cases = study.cases.count()
        if n_cases and n_cases % len(DEMO_CHOICES) == 0:
            per_class = n_cases // len(DEMO_CHOICES)
    if created or aided_created:
        cases = demo_cases(seed=bundle_seed, per_class=per_class)
        with tempfile.TemporaryDirectory(prefix="readerstudy-demo-") as tmp:
            folder = Path(tmp) / "bundle"
            write_demo_bundle(folder, cases, seed=bundle_seed, progress=progress)
            if created:
                with transaction.atomic():
                    study = cases_import(slug=DEMO_SLUG, source=folder).study
                    study.status = Study.Status.OPEN
                    study.save(update_fields=["status"])
                    _simulate(study, seed=seed, n_readers=n_readers, cases=cases)
            if aided_created:
                write_demo_study_file(folder, seed=bundle_seed, aided=True)
                aided_study = cases_import(slug=AIDED_SLUG, source=folder).study
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
        simulated_readers=_simulated_readers(study),
        seed=seed if created else demo_seed(study),
        aided_study=aided_study,
        aided_created=aided_created,
    )


def _simulated_readers(study: Study) -> int:
    return Enrolment.objects.filter(study=study, reader__reader_profile__is_simulated=True).count()


def demo_model_ensure(*, name: str, arch: str, img_size: int, description: str):
    """The registered demo model ``name`` (randomly initialised ``arch``), registered
    now if it is not yet; returns it and whether it was registered now."""
    from inference.models import RegisteredModel
    from inference.services import model_register

    existing = RegisteredModel.objects.filter(name=name).first()
    if existing is not None:
        return existing, False
    model = model_register(
        name=name,
        arch=arch,
        classes=list(DEMO_CHOICES),
        img_size=img_size,
        description=description,
    )
    return model, True


def demo_cnn_ensure():
    """The demo's reference CNN (:data:`DEMO_CNN`, untrained), registered if it is not
    yet; returns it and whether it was registered now."""
    return demo_model_ensure(
        name=DEMO_CNN,
        arch=DEMO_CNN_ARCH,
        img_size=DEMO_CNN_IMG_SIZE,
        description=DEMO_CNN_DESCRIPTION,
    )


def _predict_inline(study: Study, model, *, progress: bool, batch_size: int) -> None:
    """Run ``model`` here over the cases of ``study`` it has not predicted yet (with
    Grad-CAM maps), as ``run_inference --sync`` does; ``StudyError`` if the run fails."""
    from audit.services import cli_actor_name
    from inference.models import InferenceRun
    from inference.services import inference_run_start

    if not study.cases.exclude(predictions__model=model).exists():
        return
    from inference.services.execution import inference_run_execute  # torch: only here

    run = inference_run_start(
        model=model, study=study, batch_size=batch_size, enqueue=False, actor_name=cli_actor_name()
    )
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=run.total, desc=f"{model.name} on {study.slug}", unit="case")

    def advance(processed: int, total: int) -> None:
        bar.total, bar.n = total, processed
        bar.refresh()

    try:
        run = inference_run_execute(
            run_id=run.pk, batch_size=batch_size, progress=advance if bar else None
        )
    finally:
        if bar is not None:
            bar.close()
    if run.status != InferenceRun.Status.DONE:
        raise StudyError(f"the demo CNN's run {run.pk} on {study.slug} failed: {run.error}")


def demo_aided_open(
    *, study: Study, n_readers: int = 30, progress: bool = False, batch_size: int = 16
) -> Study:
    """Make the AI-assisted demo study that :func:`demo_build` imported ready and open it
    (nothing to do once it is open): run the demo CNN on its cases here (those it has
    not predicted; a run that a stop cut off goes on), name it as the aided condition's
    support (top 3), open the study with :func:`cases.services.study_open` (as its admin,
    audited), and draw its simulated readers: the demo study's readers, unaided as there,
    then each with the CNN's answer beside the case (:func:`demo.readers.simulate_aided_answers`).

    The opening and the readers are one transaction: a study that cannot open
    (``StudyError``, its reasons) stays a draft with its predictions, and the next call
    goes on from there."""
    from inference.models import ConditionSupport, Prediction

    if study.status != Study.Status.DRAFT:
        return study
    seed = demo_seed(study)
    if seed is None:
        raise StudyError(f"{study.slug} does not record its seed: rebuild it (demo --reset)")
    n_cases = study.cases.count()
    cases = demo_cases(seed=seed, per_class=n_cases // len(DEMO_CHOICES))
    if {c.case_id for c in cases} != set(study.cases.values_list("source_id", flat=True)):
        raise StudyError(f"{study.slug} does not hold the demo's cases: rebuild it (demo --reset)")
    model, _ = demo_cnn_ensure()
    _predict_inline(study, model, progress=progress, batch_size=batch_size)
    cnn = dict(
        Prediction.objects.filter(
            model=model, case__study=study, status=Prediction.Status.OK
        ).values_list("case__source_id", "choice__code")
    )
    admin = get_user_model().objects.get(username="admin")  # demo_build made it
    with transaction.atomic():
        aided = study.conditions.get(shows_cnn=True)
        ConditionSupport.objects.update_or_create(
            condition=aided, defaults={"model": model, "top_k": AIDED_TOP_K}
        )
        # Refused, with its reasons, unless every case has the CNN's prediction.
        study = study_open(study=study, actor=admin)
        _simulate(
            study,
            seed=seed,
            n_readers=n_readers,
            cases=cases,
            cnn_answers=[cnn[c.case_id] for c in cases],
            username="sim-aided-reader-{:03d}",
        )
        enrolment_create(study=study, reader=get_user_model().objects.get(username="reader"))
    return study


def _progress(items: Iterable, enabled: bool, desc: str, total: int | None = None) -> Iterator:
    if not enabled:
        return iter(items)
    from tqdm import tqdm

    return iter(tqdm(items, desc=desc, unit="case", total=total))
