"""``cases_import``: an import from start to end. The bundle is opened, read and checked
in full first (``manifest``, ``validation``); then the study, its cases and their images
are written in one transaction. Image files written before a failure are removed again,
so a failed import leaves neither rows nor files behind.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction

from audit.models import AuditEvent
from audit.services import audit_log
from cases.importing.bundles import Bundle, BundleError, MemberUnreadable, open_bundle
from cases.importing.imaging import THUMB_MAX_SIDE, WEB_MAX_SIDE, derivative_jpeg
from cases.importing.manifest import read_manifest, read_study_file
from cases.importing.report import ImportRejected, Problem
from cases.importing.validation import (
    CaseRow,
    ImageRef,
    NewStudy,
    check_new_study,
    validate_rows,
)
from cases.models import Case, CaseImage, Diagnosis, Study
from cases.services import StudyError, study_create


@dataclass(frozen=True)
class ImportResult:
    study: Study
    study_created: bool
    cases_created: int


def cases_import(
    *,
    slug: str,
    source: Path | str | IO[bytes],
    title: str | None = None,
    choices: Sequence[str] | None = None,
    description: str | None = None,
    actor=None,
    actor_name: str | None = None,
) -> ImportResult:
    """Import a bundle into study ``slug``, creating the study (as a draft) if needed.

    Raises ``ImportRejected`` listing every problem found; in that case nothing at all
    was written, neither rows nor files.
    """
    try:
        with open_bundle(source, max_total_bytes=settings.READERSTUDY_MAX_ARCHIVE_BYTES) as bundle:
            return _import_from(
                bundle,
                slug=slug,
                title=title,
                choices=choices,
                description=description,
                actor=actor,
                actor_name=actor_name,
            )
    except BundleError as exc:
        raise ImportRejected([Problem(str(exc))]) from None
    except zipfile.BadZipFile as exc:
        raise ImportRejected([Problem(f"the archive is damaged ({exc})")]) from None


def _import_from(
    bundle: Bundle,
    *,
    slug: str,
    title: str | None,
    choices: Sequence[str] | None,
    description: str | None,
    actor=None,
    actor_name: str | None = None,
) -> ImportResult:
    study = Study.objects.filter(slug=slug).first()
    problems: list[Problem] = []
    new_study = None
    if study is not None:
        if study.status != Study.Status.DRAFT:
            problems.append(
                Problem(
                    f"study {slug!r} is {study.status}; cases can be added only to a draft study"
                )
            )
        if choices and [c.lower() for c in choices] != [c.lower() for c in study.choice_codes()]:
            problems.append(
                Problem(
                    f"study {slug!r} exists with choices {','.join(study.choice_codes())}; "
                    "--choices can only be given for a new study"
                )
            )
        study_choices = list(
            Diagnosis.objects.filter(studychoice__study=study).order_by("studychoice__position")
        )
        existing_ids = set(study.cases.values_list("source_id", flat=True))
    else:
        new_study = check_new_study(
            slug=slug,
            title=title,
            choices=choices,
            description=description,
            settings_file=read_study_file(bundle),
            problems=problems,
        )
        study_choices = new_study.choices
        existing_ids = set()
    if problems:
        raise ImportRejected(problems)

    _header, rows = read_manifest(bundle)
    parsed = validate_rows(bundle, rows=rows, choices=study_choices, existing_ids=existing_ids)

    written: list[str] = []
    created = new_study is not None
    try:
        with transaction.atomic():
            if new_study is not None:
                study = _create_checked_study(slug=slug, new_study=new_study)
            else:
                study = _lock_and_recheck(study, parsed=parsed, choices=study_choices)
            start = (
                study.cases.order_by("-position").values_list("position", flat=True).first() or 0
            )
            for offset, row in enumerate(parsed, start=1):
                case = Case.objects.create(
                    study=study,
                    source_id=row.case_id,
                    position=start + offset,
                    diagnosis=row.diagnosis,
                    age=row.age,
                    sex=row.sex,
                    site=row.site,
                    histopathology=row.histopathology,
                )
                for kind, ref in row.images.items():
                    _store_image(case=case, kind=kind, bundle=bundle, ref=ref, written=written)
            audit_log(
                action=AuditEvent.Action.CASES_IMPORT,
                actor=actor,
                actor_name=actor_name,
                study=study.slug,
                obj=study,
                after={
                    "study_created": created,
                    "cases": [row.case_id for row in parsed],
                    "images_sha256": sorted(
                        ref.image.sha256 for row in parsed for ref in row.images.values()
                    ),
                },
            )
    except IntegrityError:
        _remove_files(written)
        if created and Study.objects.filter(slug=slug).exists():
            # Only PostgreSQL gets here: SQLite runs one writing transaction at a time.
            raise ImportRejected(
                [
                    Problem(
                        f"study {slug!r} was created by another import while this one ran; "
                        "run this import again to add its cases to that study"
                    )
                ]
            ) from None
        raise
    except BaseException:
        _remove_files(written)
        raise
    return ImportResult(study=study, study_created=created, cases_created=len(parsed))


def _create_checked_study(*, slug: str, new_study: NewStudy) -> Study:
    try:
        return study_create(
            slug=slug,
            title=new_study.title,
            choices=[d.code for d in new_study.choices],
            description=new_study.description,
            conditions=new_study.conditions,
            **new_study.options,
        )
    except (StudyError, ValidationError) as exc:  # check_new_study should have caught it
        raise ImportRejected([Problem(f"the study cannot be created: {exc}")]) from None


def _lock_and_recheck(study: Study, *, parsed: list[CaseRow], choices: list[Diagnosis]) -> Study:
    """The study row, locked until the import commits, after checking again what another
    import or an admin may have changed since validation: a second import into the same
    study waits here and then sees the first one's cases."""
    study = Study.objects.select_for_update().get(pk=study.pk)
    if study.status != Study.Status.DRAFT:
        raise ImportRejected(
            [
                Problem(
                    f"study {study.slug!r} is {study.status}; cases can be added only to a "
                    "draft study"
                )
            ]
        )
    if study.choice_codes() != [d.code for d in choices]:
        raise ImportRejected(
            [
                Problem(
                    f"the choices of study {study.slug!r} changed during the import; run it again"
                )
            ]
        )
    existing = set(study.cases.values_list("source_id", flat=True))
    clashes = [
        Problem(
            "case_id already exists in this study (added while this import ran)",
            row=row.row,
            case_id=row.case_id,
        )
        for row in parsed
        if row.case_id in existing
    ]
    if clashes:
        raise ImportRejected(clashes)
    return study


def _store_image(*, case: Case, kind: str, bundle: Bundle, ref: ImageRef, written: list[str]):
    try:
        data = bundle.read(ref.name)
    except MemberUnreadable as exc:
        raise ImportRejected([Problem(f"{ref.name!r}: {exc}")]) from None
    checked = ref.image
    image = CaseImage(
        case=case,
        kind=kind,
        format=checked.format,
        sha256=checked.sha256,
        width=checked.width,
        height=checked.height,
        size_bytes=len(data),
    )
    if hashlib.sha256(data).hexdigest() != checked.sha256:
        raise ImportRejected([Problem(f"{ref.name!r} changed while it was being imported")])
    image.original.save(f"x.{checked.suffix}", ContentFile(data), save=False)
    written.append(image.original.name)
    max_pixels = settings.READERSTUDY_MAX_IMAGE_PIXELS
    web = derivative_jpeg(data, max_side=WEB_MAX_SIDE, max_pixels=max_pixels)
    image.web.save("x.jpg", ContentFile(web), save=False)
    written.append(image.web.name)
    thumbnail = derivative_jpeg(data, max_side=THUMB_MAX_SIDE, quality=80, max_pixels=max_pixels)
    image.thumbnail.save("x.jpg", ContentFile(thumbnail), save=False)
    written.append(image.thumbnail.name)
    image.save()


def _remove_files(names: list[str]) -> None:
    from django.core.files.storage import default_storage

    for name in names:
        default_storage.delete(name)
