"""Case import and export: ``cases.csv`` plus image files, in a folder or a .zip.

Import validates every row and every image, and a new study's settings, before it writes
anything, then writes the study, cases and images in one transaction. Every bad input
becomes a ``Problem`` in one ``ImportRejected`` report. Image files written before a
failure are removed again, so a failed import leaves neither rows nor files behind.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.core.files.base import ContentFile
from django.db import IntegrityError, models, transaction
from django.utils.text import slugify

from audit.models import AuditEvent
from audit.services import audit_log
from cases.bundles import (
    MANIFEST,
    STUDY_FILE,
    Bundle,
    BundleError,
    MemberUnreadable,
    open_bundle,
)
from cases.imaging import (
    THUMB_MAX_SIDE,
    WEB_MAX_SIDE,
    CheckedImage,
    ImageRejected,
    check_image,
    derivative_jpeg,
)
from cases.models import Case, CaseImage, Diagnosis, Study
from cases.services import StudyError, study_create

REQUIRED_COLUMNS = ("case_id", "diagnosis", "clinical_image", "dermoscopic_image")
OPTIONAL_COLUMNS = ("age", "sex", "site", "histopathology")
# The file name's suffix declares the type; the decoded content must match it.
DECLARED_FORMATS = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "tif": "TIFF", "tiff": "TIFF"}
IMAGE_COLUMNS = {"clinical_image": "clinical", "dermoscopic_image": "dermoscopic"}
# The Study fields that study.json carries besides title, description and choices. Export
# writes each of them and import reads, type-checks and validates each of them, so a new
# study field that belongs in the bundle needs only its name added here.
STUDY_OPTIONS = (
    "shuffle_cases",
    "show_clinical_image",
    "allow_answer_changes",
    "show_feedback",
    "show_model_feedback",
    "ask_confidence",
    "consent_text",
    "consent_version",
    "required_profile_fields",
    "is_synthetic",
    "title_zh",
    "description_zh",
    "consent_text_zh",
)
STUDY_FILE_KEYS = ("title", "description", "choices", *STUDY_OPTIONS)
# cases.csv and study.json are read whole; a real case list is far below this.
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
# The Study check constraints, said in the words of the bundle's fields.
CONSTRAINT_MESSAGES = {
    "consent_text_has_version": "a consent text needs a consent_version (the version that "
    "readers agree to)",
}
_TRUE = {"1", "true", "yes", "y"}
_FALSE = {"0", "false", "no", "n"}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input; ``row`` is the CSV line number (header = 1)."""

    message: str
    row: int | None = None
    case_id: str = ""

    def __str__(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.case_id:
            where.append(f"case {self.case_id!r}")
        return f"{', '.join(where)}: {self.message}" if where else self.message


class ImportRejected(Exception):
    """The import was refused; nothing was written. ``problems`` lists every reason."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__(self.report())

    def report(self) -> str:
        lines = [f"Import refused, nothing was written ({len(self.problems)} problem(s)):"]
        lines += [f"  - {problem}" for problem in self.problems]
        return "\n".join(lines)


@dataclass(frozen=True)
class _ImageRef:
    name: str
    image: CheckedImage  # data dropped after validation to keep memory flat


@dataclass
class _CaseRow:
    row: int
    case_id: str
    diagnosis: Diagnosis
    images: dict[str, _ImageRef] = field(default_factory=dict)
    age: int | None = None
    sex: str = ""
    site: str = ""
    histopathology: bool | None = None


@dataclass(frozen=True)
class ImportResult:
    study: Study
    study_created: bool
    cases_created: int


def _resolve_codes(codes: Sequence[str], known: dict[str, Diagnosis]) -> tuple[list, list]:
    found, unknown = [], []
    for code in codes:
        diagnosis = known.get(code.strip().lower())
        (found if diagnosis else unknown).append(diagnosis or code)
    return found, unknown


def _known_diagnoses() -> dict[str, Diagnosis]:
    return {d.code.lower(): d for d in Diagnosis.objects.all()}


def _parse_bool(value: str) -> bool | None:
    lowered = value.strip().lower()
    if lowered == "":
        return None
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(value)


def _read_small_file(bundle: Bundle, name: str) -> bytes | None:
    """The bytes of ``cases.csv`` or ``study.json``; None when the bundle lacks it."""
    try:
        if not bundle.exists(name):
            return None
        size = bundle.size(name)
        if size > MAX_MANIFEST_BYTES:
            raise ImportRejected(
                [Problem(f"{name} has {size:,} bytes; the limit is {MAX_MANIFEST_BYTES:,}")]
            )
        return bundle.read(name)
    except BundleError as exc:
        raise ImportRejected([Problem(f"{name}: {exc}")]) from None


def _read_manifest(bundle: Bundle) -> tuple[list[str], list[dict[str, str]]]:
    raw = _read_small_file(bundle, MANIFEST)
    if raw is None:
        raise ImportRejected([Problem(f"{MANIFEST} is missing from the bundle")])
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ImportRejected([Problem(f"{MANIFEST} is not UTF-8 text")]) from None
    if "\x00" in text:  # PostgreSQL cannot store it: refuse it here, not when writing
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise ImportRejected([Problem(f"{MANIFEST} line {line} contains a NUL character")])
    reader = csv.DictReader(io.StringIO(text))
    header = [(name or "").strip().lower() for name in (reader.fieldnames or [])]
    problems = []
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        problems.append(Problem(f"{MANIFEST} lacks the column(s): {', '.join(missing)}"))
    unknown = [c for c in header if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if unknown:
        allowed = ", ".join(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)
        problems.append(
            Problem(f"{MANIFEST} has unknown column(s): {', '.join(unknown)} (allowed: {allowed})")
        )
    if len(set(header)) != len(header):
        problems.append(Problem(f"{MANIFEST} repeats a column name"))
    if problems:
        raise ImportRejected(problems)
    rows = []
    try:
        for raw_row in reader:
            if None in raw_row:
                rows.append({"__extra__": "1"})
                continue
            rows.append(
                {k.strip().lower(): (v or "").strip() for k, v in raw_row.items() if k is not None}
            )
    except csv.Error as exc:  # a field over the csv module's size limit
        # line_num counts the lines read before the failing one.
        line = reader.line_num + 1
        raise ImportRejected([Problem(f"{MANIFEST} line {line}: {exc}")]) from None
    if not rows:
        raise ImportRejected([Problem(f"{MANIFEST} has no case rows")])
    return header, rows


def _validate(
    bundle: Bundle,
    *,
    rows: list[dict[str, str]],
    choices: list[Diagnosis],
    existing_ids: set[str],
) -> list[_CaseRow]:
    known = _known_diagnoses()
    choice_codes = {d.code for d in choices}
    max_bytes = settings.READERSTUDY_MAX_IMAGE_BYTES
    max_pixels = settings.READERSTUDY_MAX_IMAGE_PIXELS
    problems: list[Problem] = []
    seen_ids: dict[str, int] = {}
    seen_files: dict[str, int] = {}
    seen_hashes: dict[str, int] = {}
    parsed: list[_CaseRow] = []

    for index, values in enumerate(rows):
        line = index + 2  # header is line 1
        if "__extra__" in values:
            problems.append(Problem("has more fields than the header", row=line))
            continue
        case_id = values.get("case_id", "")
        bad = len(problems)

        def report(message: str, *, _line: int = line, _case: str = case_id) -> None:
            problems.append(Problem(message, row=_line, case_id=_case))

        if not case_id:
            report("case_id is empty")
        elif len(case_id) > 100:
            report("case_id is longer than 100 characters")
        elif case_id in seen_ids:
            report(f"duplicate case_id (also on row {seen_ids[case_id]})")
        elif case_id in existing_ids:
            report("case_id already exists in this study")
        seen_ids.setdefault(case_id, line)

        code = values.get("diagnosis", "")
        diagnosis = known.get(code.lower())
        if not code:
            report("diagnosis is empty")
        elif diagnosis is None:
            report(f"unknown diagnosis code {code!r}")
        elif diagnosis.code not in choice_codes:
            report(
                f"diagnosis {diagnosis.code} is not one of the study's choices "
                f"({', '.join(sorted(choice_codes))})"
            )

        case_row = _CaseRow(row=line, case_id=case_id, diagnosis=diagnosis)  # type: ignore[arg-type]
        age = values.get("age", "")
        if age:
            try:
                case_row.age = int(age)
                if not 0 <= case_row.age <= 130:
                    raise ValueError
            except ValueError:
                report(f"age {age!r} is not a whole number of years between 0 and 130")
        sex = values.get("sex", "").upper()
        if sex in {"F", "FEMALE"}:
            case_row.sex = "F"
        elif sex in {"M", "MALE"}:
            case_row.sex = "M"
        elif sex in {"O", "OTHER"}:
            case_row.sex = "O"
        elif sex:
            report(f"sex {values['sex']!r} is not one of F, M, O")
        case_row.site = values.get("site", "")
        if len(case_row.site) > 100:
            report("site is longer than 100 characters")
        try:
            case_row.histopathology = _parse_bool(values.get("histopathology", ""))
        except ValueError:
            report(f"histopathology {values['histopathology']!r} is not yes/no (or 1/0)")

        for column, kind in IMAGE_COLUMNS.items():
            name = values.get(column, "")
            if not name:
                report(f"{column} is empty")
                continue
            try:
                present = bundle.exists(name)
            except MemberUnreadable as exc:
                report(f"{column} {name!r}: {exc}")
                continue
            except BundleError as exc:  # an unsafe name; the message quotes it
                report(f"{column}: {exc}")
                continue
            if not present:
                report(f"{column} {name!r} is missing from the bundle")
                continue
            if name in seen_files:
                report(f"{column} {name!r} is also used on row {seen_files[name]}")
                continue
            seen_files[name] = line
            try:
                size = bundle.size(name)
                if size > max_bytes:
                    report(
                        f"{column} {name!r}: the file has {size:,} bytes; the limit is {max_bytes:,}"
                    )
                    continue
                checked = check_image(bundle.read(name), max_bytes=max_bytes, max_pixels=max_pixels)
            except (MemberUnreadable, ImageRejected) as exc:
                report(f"{column} {name!r}: {exc}")
                continue
            declared = DECLARED_FORMATS.get(name.rsplit(".", 1)[-1].lower() if "." in name else "")
            if declared != checked.format:
                report(
                    f"{column} {name!r}: the content is {checked.format}, which does not match "
                    f"the file name (use .jpg/.jpeg, .png or .tif/.tiff to match the content)"
                )
                continue
            if checked.sha256 in seen_hashes:
                report(
                    f"{column} {name!r} has the same content as an image on row "
                    f"{seen_hashes[checked.sha256]}"
                )
                continue
            seen_hashes[checked.sha256] = line
            light = CheckedImage(b"", checked.format, checked.width, checked.height, checked.sha256)
            case_row.images[kind] = _ImageRef(name=name, image=light)
        if len(problems) == bad:
            parsed.append(case_row)
    if problems:
        raise ImportRejected(problems)
    return parsed


def _study_settings(bundle: Bundle) -> dict:
    raw = _read_small_file(bundle, STUDY_FILE)
    if raw is None:
        return {}
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ImportRejected([Problem(f"{STUDY_FILE} is not valid JSON ({exc})")]) from None
    except RecursionError:
        raise ImportRejected([Problem(f"{STUDY_FILE} is nested too deeply")]) from None
    if not isinstance(data, dict):
        raise ImportRejected([Problem(f"{STUDY_FILE} must hold a JSON object")])
    return data


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class _NewStudy:
    """What ``study_create`` gets for a study the import creates; checked beforehand."""

    title: str
    description: str
    choices: list[Diagnosis]
    options: dict[str, object]


def _check_new_study(
    *,
    slug: str,
    title: str | None,
    choices: Sequence[str] | None,
    description: str | None,
    settings_file: dict,
    problems: list[Problem],
) -> _NewStudy:
    """The new study ``slug`` as the command line and study.json describe it, checked as
    thoroughly as ``study_create`` checks it (and the types of study.json's values), so
    that creating it inside the write transaction cannot fail. Appends to ``problems``."""
    slug_ok = bool(slug) and slugify(slug) == slug
    if not slug_ok:
        problems.append(Problem(f"{slug!r} is not a valid study slug (use a-z, 0-9, -)"))
    unknown_keys = [key for key in settings_file if key not in STUDY_FILE_KEYS]
    if unknown_keys:
        problems.append(
            Problem(
                f"{STUDY_FILE} has unknown key(s): {', '.join(map(str, unknown_keys))} "
                f"(allowed: {', '.join(STUDY_FILE_KEYS)})"
            )
        )

    def type_problem(key: str, value: object, expected: str) -> None:
        problems.append(Problem(f"{STUDY_FILE}: {key} must be {expected}, not {_short(value)}"))

    def text(key: str, given: str | None) -> str | None:
        if given is not None:  # the command line wins over study.json
            return given
        value = settings_file.get(key, "")
        if not isinstance(value, str) or "\x00" in value:
            type_problem(key, value, "a string (without NUL characters)")
            return None
        return value

    title = text("title", title)
    description = text("description", description) or ""
    if title == "":
        problems.append(
            Problem(f"study {slug!r} does not exist: give --title and --choices to create it")
        )
    given_codes = choices or settings_file.get("choices") or []
    codes: list[str] | None = None
    if isinstance(given_codes, list | tuple) and all(isinstance(c, str) for c in given_codes):
        codes = list(given_codes)
    else:  # only study.json can get here; a string would be read letter by letter
        type_problem("choices", given_codes, 'a list of codes such as ["MN", "SK"]')
    diagnoses, unknown = _resolve_codes(codes or [], _known_diagnoses())
    if codes == []:
        problems.append(
            Problem(f"study {slug!r} does not exist: give --choices (e.g. MN,SK,BCC) to create it")
        )
    elif codes is not None and len(codes) < 2:
        problems.append(Problem(f"a study needs at least two choices, not only {codes[0]}"))
    if unknown:
        problems.append(Problem(f"unknown diagnosis code(s) in the choices: {', '.join(unknown)}"))
    if len({d.code for d in diagnoses}) != len(diagnoses):
        problems.append(Problem("the choices repeat a diagnosis"))

    options: dict[str, object] = {}
    for name in STUDY_OPTIONS:
        if name not in settings_file:
            continue
        value = settings_file[name]
        field = Study._meta.get_field(name)
        if isinstance(field, models.BooleanField) and not isinstance(value, bool):
            type_problem(name, value, "true or false")
        elif isinstance(field, models.CharField | models.TextField) and (
            not isinstance(value, str) or "\x00" in value
        ):
            type_problem(name, value, "a string (without NUL characters)")
        else:
            options[name] = value

    # The model's own checks (lengths, the slug, Study.clean, constraints), on the unsaved
    # study that study_create will save.
    study = Study(slug=slug, title=title or "", description=description, **options)
    exclude = ["choices"] + ([] if slug_ok else ["slug"]) + ([] if title else ["title"])
    try:
        study.full_clean(exclude=exclude, validate_constraints=False)
    except ValidationError as exc:
        for name, messages in exc.message_dict.items():
            for message in messages:
                where = "" if name == NON_FIELD_ERRORS else f"study {name}: "
                problems.append(Problem(f"{where}{message}"))
    for constraint in Study._meta.constraints:
        try:
            constraint.validate(Study, study, exclude=exclude)
        except ValidationError as exc:
            problems.append(
                Problem(CONSTRAINT_MESSAGES.get(constraint.name, " ".join(exc.messages)))
            )
    return _NewStudy(title=title or "", description=description, choices=diagnoses, options=options)


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
        new_study = _check_new_study(
            slug=slug,
            title=title,
            choices=choices,
            description=description,
            settings_file=_study_settings(bundle),
            problems=problems,
        )
        study_choices = new_study.choices
        existing_ids = set()
    if problems:
        raise ImportRejected(problems)

    _header, rows = _read_manifest(bundle)
    parsed = _validate(bundle, rows=rows, choices=study_choices, existing_ids=existing_ids)

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


def _create_checked_study(*, slug: str, new_study: _NewStudy) -> Study:
    try:
        return study_create(
            slug=slug,
            title=new_study.title,
            choices=[d.code for d in new_study.choices],
            description=new_study.description,
            **new_study.options,
        )
    except (StudyError, ValidationError) as exc:  # _check_new_study should have caught it
        raise ImportRejected([Problem(f"the study cannot be created: {exc}")]) from None


def _lock_and_recheck(study: Study, *, parsed: list[_CaseRow], choices: list[Diagnosis]) -> Study:
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


def _store_image(*, case: Case, kind: str, bundle: Bundle, ref: _ImageRef, written: list[str]):
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


# --- export -----------------------------------------------------------------------------


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
