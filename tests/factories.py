"""Builders of the test suite's data for the cases app: factory_boy factories, studies
with cases and ready enrolments, case bundles for the importer, images.

Tests import builders from here (or from an app's own ``tests/<app>/factories.py``),
never from another test module; personas are fixtures in ``tests/conftest.py``."""

from __future__ import annotations

import csv
import io
import struct
import zipfile
import zlib
from pathlib import Path

import factory
import numpy as np
import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from PIL import Image

from cases import selectors
from cases.importing import ImportRejected, cases_import
from cases.importing.manifest import OPTIONAL_COLUMNS, REQUIRED_COLUMNS
from cases.models import (
    Case,
    CaseImage,
    Diagnosis,
    Enrolment,
    ReaderProfile,
    ReadingCondition,
    Study,
)
from cases.services import (
    case_order_for,
    case_serve,
    consent_give,
    enrolment_create,
    profile_save,
    study_create,
)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ["username"]

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("pw-test-123")


class ReaderProfileFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ReaderProfile

    user = factory.SubFactory(UserFactory)
    level = ReaderProfile.Level.ATTENDING
    years_in_dermatology = 8


def make_study(*, slug: str = "study", choices=("MN", "SK", "BCC"), **options) -> Study:
    return study_create(slug=slug, title=slug.title(), choices=list(choices), **options)


class CaseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Case
        skip_postgeneration_save = True

    study = factory.LazyFunction(lambda: make_study())
    source_id = factory.Sequence(lambda n: f"case-{n}")
    position = factory.Sequence(lambda n: n + 1)
    diagnosis = factory.LazyFunction(lambda: Diagnosis.objects.get(code="MN"))

    @factory.post_generation
    def with_images(case, create, extracted, **kwargs):
        if not create or extracted is False:
            return
        for offset, kind in enumerate(("clinical", "dermoscopic")):
            data = image_bytes(seed=case.pk * 2 + offset)
            image = CaseImage(
                case=case,
                kind=kind,
                format="JPEG",
                sha256="0" * 64,
                width=64,
                height=48,
                size_bytes=len(data),
            )
            for field in ("original", "web", "thumbnail"):
                getattr(image, field).save("x.jpg", ContentFile(data), save=False)
            image.save()


def enrol(*, study: Study, user, seed: int = 1) -> Enrolment:
    return Enrolment.objects.create(
        study=study, reader=user, order_seed=seed, case_order=case_order_for(study=study, seed=seed)
    )


def build_study(n_cases: int = 4, **options) -> Study:
    options.setdefault("status", Study.Status.OPEN)
    options.setdefault("consent_text", "I agree to take part.")
    options.setdefault("consent_version", "v1")
    study = make_study(choices=("MN", "SK", "BCC"), **options)
    codes = ["MN", "SK", "BCC"]
    for i in range(n_cases):
        CaseFactory(
            study=study,
            source_id=f"k{i}",
            position=i + 1,
            diagnosis=Diagnosis.objects.get(code=codes[i % 3]),
        )
    return study


def ready_enrolment(study, user, *, serve: bool = True, **profile) -> Enrolment:
    """An enrolment that has consented, filled the profile and (with ``serve``) been
    served its first case: an answer is only accepted for a served case."""
    enrolment = enrolment_create(study=study, reader=user, seed=5)
    consent_give(enrolment=enrolment)
    profile_save(user=user, level="attending", years_in_dermatology=4, **profile)
    if serve and enrolment.case_order:
        enrolment = Enrolment.objects.select_related("study").get(pk=enrolment.pk)
        first = selectors.reading_plan(enrolment=enrolment)[0]
        case_serve(
            enrolment=enrolment,
            case=Case.objects.get(pk=first.case_id),
            condition_id=first.condition.pk,
        )
    return Enrolment.objects.get(pk=enrolment.pk)


def supported_study(
    n_cases: int = 3,
    *,
    design: str = Study.Design.SEQUENTIAL,
    slug: str = "aided",
    top_k: int = 2,
    gradcam: bool = True,
    open_it: bool = True,
    **options,
) -> Study:
    """A study of two reading conditions, ``unaided`` then ``aided`` (the CNN's top-k
    support and, with ``gradcam``, its Grad-CAM), of ``design`` (a crossover with a
    washout of 7 days), whose model ``sup-cnn`` predicted every case: each case's
    reference with probability 0.6, the next class 0.3, the last 0.1, so the CNN is
    always right. Opened through the service unless ``open_it`` is False."""
    from cases.services import study_open
    from inference.models import ConditionSupport, InferenceRun, Prediction, RegisteredModel

    if design == Study.Design.CROSSOVER:
        options.setdefault("washout_days", 7)
    study = build_study(n_cases, slug=slug, status=Study.Status.DRAFT, design=design, **options)
    aided = ReadingCondition.objects.create(
        study=study,
        code="aided",
        position=2,
        label="With the CNN",
        label_zh="有CNN辅助",
        shows_cnn=True,
        shows_gradcam=gradcam,
    )
    model = RegisteredModel.objects.create(
        name="sup-cnn", arch="efficientnet_b4_aux", classes=["MN", "SK", "BCC"],
        preprocessing={"input_size": 64}, weights_source="random",
    )  # fmt: skip
    ConditionSupport.objects.create(condition=aided, model=model, top_k=top_k)
    run = InferenceRun.objects.create(model=model, study=study, status="done", total=n_cases)
    codes = ["MN", "SK", "BCC"]
    for case in study.cases.select_related("diagnosis"):
        k = codes.index(case.diagnosis.code)
        probabilities = {codes[k]: 0.6, codes[(k + 1) % 3]: 0.3, codes[(k + 2) % 3]: 0.1}
        prediction = Prediction(
            model=model, case=case, run=run, choice=case.diagnosis,
            probabilities=probabilities, choice_probabilities=probabilities,
        )  # fmt: skip
        if gradcam:
            prediction.gradcam.save("cam.png", ContentFile(b"\x89PNG cam"), save=False)
        prediction.save()
    if open_it:
        study_open(study=study, actor=None)
        study.refresh_from_db()
    return study


HEADER = [*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS]  # every column of cases.csv


def write_bundle(folder: Path, rows: list[dict], *, images: dict[str, bytes] | None = None):
    """Write cases.csv with ``rows`` and, unless given, one distinct image per file name."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "cases.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=HEADER)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: row.get(key, "") for key in HEADER})
    if images is None:
        images = {}
        for index, row in enumerate(rows):
            for column in ("clinical_image", "dermoscopic_image"):
                if row.get(column):
                    suffix = row[column].rsplit(".", 1)[-1].lower()
                    fmt = {"png": "PNG", "tif": "TIFF", "tiff": "TIFF"}.get(suffix, "JPEG")
                    images[row[column]] = image_bytes(seed=index * 2 + len(images), fmt=fmt)
    for name, data in images.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def good_rows(n: int = 4, codes=("MN", "SK", "BCC")) -> list[dict]:
    return [
        {
            "case_id": f"c{i:03d}",
            "diagnosis": codes[i % len(codes)],
            "clinical_image": f"img/c{i:03d}_clin.jpg",
            "dermoscopic_image": f"img/c{i:03d}_derm.png",
            "age": str(30 + i),
            "sex": "F" if i % 2 else "M",
            "site": "back",
            "histopathology": "yes" if i % 2 else "",
        }
        for i in range(n)
    ]


def zip_folder(folder: Path, target: Path, *, extra: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(target, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder).as_posix())
        for name, data in (extra or {}).items():
            archive.writestr(zipfile.ZipInfo(name), data)
    return target


def snapshot(media_root: Path) -> tuple:
    """The row count of every model of the cases and audit apps, and the media files: what
    a refused import must leave as it found it (a stray StudyChoice or AuditEvent too)."""
    counts = tuple(
        (model._meta.label, model._default_manager.count())
        for app in ("cases", "audit")
        for model in apps.get_app_config(app).get_models()
    )
    files = (
        sorted(p.relative_to(media_root).as_posix() for p in media_root.rglob("*") if p.is_file())
        if media_root.exists()
        else []
    )
    return counts, files


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 1024))
        + chunk(b"IEND", b"")
    )


def assert_rejected(media_root, *, slug="study", source, expect: list[str], **kwargs):
    before = snapshot(media_root)
    with pytest.raises(ImportRejected) as info:
        cases_import(slug=slug, source=source, **kwargs)
    report = info.value.report()
    for text in expect:
        assert text in report, report
    assert snapshot(media_root) == before
    return info.value


def image_bytes(*, seed: int = 0, size=(64, 48), fmt: str = "JPEG") -> bytes:
    """A small random image; different seeds give different bytes."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=fmt)
    return out.getvalue()


def study_change_post(study: Study) -> dict:
    """The admin's study change form as it comes for ``study``, its choices unchanged:
    a base for a test that changes one field through the admin."""
    choices = list(study.study_choices.order_by("position"))
    data = {
        "title": study.title,
        "slug": study.slug,
        "description": study.description,
        "shuffle_cases": "on" if study.shuffle_cases else "",
        "show_clinical_image": "on" if study.show_clinical_image else "",
        "consent_text": study.consent_text,
        "consent_version": study.consent_version,
        "required_profile_fields": list(study.required_profile_fields or []),
        "study_choices-TOTAL_FORMS": str(len(choices)),
        "study_choices-INITIAL_FORMS": str(len(choices)),
        "study_choices-MIN_NUM_FORMS": "0",
        "study_choices-MAX_NUM_FORMS": "1000",
    }
    for i, choice in enumerate(choices):
        data[f"study_choices-{i}-id"] = choice.pk
        data[f"study_choices-{i}-diagnosis"] = choice.diagnosis_id
        data[f"study_choices-{i}-position"] = choice.position
        data[f"study_choices-{i}-study"] = study.pk
    data.update(conditions_post(study))
    return {key: value for key, value in data.items() if value != ""}


CONDITION_FLAGS = ("shows_dermoscopic", "shows_clinical", "shows_metadata", "shows_cnn")


def conditions_post(study: Study) -> dict:
    """The study change form's reading-conditions inline as it comes, unchanged (a
    study that is not a draft shows them read-only: only their ids come back)."""
    conditions = list(study.conditions.order_by("position"))
    data = {
        "conditions-TOTAL_FORMS": str(len(conditions)),
        "conditions-INITIAL_FORMS": str(len(conditions)),
        "conditions-MIN_NUM_FORMS": "0",
        "conditions-MAX_NUM_FORMS": "1000",
    }
    for i, condition in enumerate(conditions):
        data[f"conditions-{i}-id"] = condition.pk
        data[f"conditions-{i}-study"] = study.pk
        if study.status != Study.Status.DRAFT:
            continue
        for name in ("position", "code", "label", "label_zh"):
            data[f"conditions-{i}-{name}"] = getattr(condition, name)
        for name in (*CONDITION_FLAGS, "shows_gradcam"):
            if getattr(condition, name):
                data[f"conditions-{i}-{name}"] = "on"
    return data
