"""``cases_export``: a study written back out as a bundle, in the format that import
reads, so that importing an export gives the same study."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

from django.utils.text import slugify

from cases.importing.bundles import MANIFEST, STUDY_FILE
from cases.importing.manifest import (
    CONDITION_KEYS,
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    STUDY_OPTIONS,
)
from cases.models import Case, CaseImage, Study


def _export_name(case: Case, kind: str, suffix: str) -> str:
    stem = slugify(case.source_id) or "case"
    return f"images/{case.position:04d}-{stem}-{kind}.{suffix}"


def cases_export(*, study: Study, destination: Path | str) -> int:
    """Write ``study`` as a bundle (``cases.csv``, ``study.json``, images) to a folder or,
    when ``destination`` ends in ``.zip``, a zip archive. Returns the number of cases.

    The images are the original files, byte for byte, so importing the export gives an
    identical study (same cases, diagnoses, metadata and image checksums).
    """
    destination = Path(destination)
    if destination.exists() and (destination.is_file() or any(destination.iterdir())):
        raise FileExistsError(f"{destination} already exists and is not an empty folder")
    cases = list(
        study.cases.select_related("diagnosis").prefetch_related("images").order_by("position")
    )
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)
    files: list[tuple[str, CaseImage]] = []
    for case in cases:
        names = {}
        for image in case.images.all():
            suffix = image.original.name.rsplit(".", 1)[-1]
            names[image.kind] = _export_name(case, image.kind, suffix)
            files.append((names[image.kind], image))
        writer.writerow(
            [
                case.source_id,
                case.diagnosis.code,
                names.get("clinical", ""),
                names.get("dermoscopic", ""),
                "" if case.age is None else case.age,
                case.sex,
                case.site,
                {True: "yes", False: "no", None: ""}[case.histopathology],
            ]
        )
    study_json = json.dumps(
        {
            "title": study.title,
            "description": study.description,
            "choices": study.choice_codes(),
            **{k: getattr(study, k) for k in STUDY_OPTIONS},
            "conditions": [
                {k: getattr(condition, k) for k in CONDITION_KEYS}
                for condition in study.conditions.order_by("position")
            ],
        },
        indent=2,
        ensure_ascii=False,
    )
    if destination.suffix.lower() == ".zip":
        destination.parent.mkdir(parents=True, exist_ok=True)
        tmp = destination.with_suffix(".zip.partial")
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(MANIFEST, out.getvalue())
            archive.writestr(STUDY_FILE, study_json)
            for name, image in files:
                with image.original.open("rb") as handle:
                    archive.writestr(name, handle.read(), compress_type=zipfile.ZIP_STORED)
        tmp.replace(destination)
    else:
        (destination / "images").mkdir(parents=True, exist_ok=True)
        (destination / MANIFEST).write_text(out.getvalue(), encoding="utf-8")
        (destination / STUDY_FILE).write_text(study_json, encoding="utf-8")
        for name, image in files:
            with image.original.open("rb") as handle:
                (destination / name).write_bytes(handle.read())
    return len(cases)
