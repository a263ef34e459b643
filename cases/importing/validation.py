"""Every check an import makes before it writes anything: each row of ``cases.csv``,
each image it names, and the settings of a study the import creates. A check never
stops at the first problem: all of them go into one ``ImportRejected``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import models
from django.utils.text import slugify

from cases.importing.bundles import STUDY_FILE, Bundle, BundleError, MemberUnreadable
from cases.importing.imaging import CheckedImage, ImageRejected, check_image
from cases.importing.manifest import (
    CONDITION_KEYS,
    IMAGE_COLUMNS,
    STUDY_FILE_KEYS,
    STUDY_OPTIONS,
)
from cases.importing.report import ImportRejected, Problem
from cases.models import Diagnosis, ReadingCondition, Study

# The file name's suffix declares the type; the decoded content must match it.
DECLARED_FORMATS = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "tif": "TIFF", "tiff": "TIFF"}
# The Study check constraints, said in the words of the bundle's fields.
CONSTRAINT_MESSAGES = {
    "consent_text_has_version": "a consent text needs a consent_version (the version that "
    "readers agree to)",
}
_TRUE = {"1", "true", "yes", "y"}
_FALSE = {"0", "false", "no", "n"}


@dataclass(frozen=True)
class ImageRef:
    name: str
    image: CheckedImage  # data dropped after validation to keep memory flat


@dataclass
class CaseRow:
    row: int
    case_id: str
    diagnosis: Diagnosis
    images: dict[str, ImageRef] = field(default_factory=dict)
    age: int | None = None
    sex: str = ""
    site: str = ""
    histopathology: bool | None = None


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


def validate_rows(
    bundle: Bundle,
    *,
    rows: list[dict[str, str]],
    choices: list[Diagnosis],
    existing_ids: set[str],
) -> list[CaseRow]:
    """The rows of ``cases.csv``, each value and each image it names checked against the
    study's ``choices`` and the case ids it already has; raises ``ImportRejected`` listing
    every problem."""
    known = _known_diagnoses()
    choice_codes = {d.code for d in choices}
    max_bytes = settings.READERSTUDY_MAX_IMAGE_BYTES
    max_pixels = settings.READERSTUDY_MAX_IMAGE_PIXELS
    problems: list[Problem] = []
    seen_ids: dict[str, int] = {}
    seen_files: dict[str, int] = {}
    seen_hashes: dict[str, int] = {}
    parsed: list[CaseRow] = []

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

        case_row = CaseRow(row=line, case_id=case_id, diagnosis=diagnosis)  # type: ignore[arg-type]
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
            case_row.images[kind] = ImageRef(name=name, image=light)
        if len(problems) == bad:
            parsed.append(case_row)
    if problems:
        raise ImportRejected(problems)
    return parsed


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class NewStudy:
    """What ``study_create`` gets for a study the import creates; checked beforehand."""

    title: str
    description: str
    choices: list[Diagnosis]
    options: dict[str, object]
    conditions: list[dict] | None = None


def check_new_study(
    *,
    slug: str,
    title: str | None,
    choices: Sequence[str] | None,
    description: str | None,
    settings_file: dict,
    problems: list[Problem],
) -> NewStudy:
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
        elif isinstance(field, models.IntegerField) and not (
            (value is None and field.null)
            or (isinstance(value, int) and not isinstance(value, bool))
        ):
            type_problem(name, value, "a whole number" + (" or null" if field.null else ""))
        else:
            options[name] = value
    conditions = _check_conditions(settings_file.get("conditions"), problems)

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
    return NewStudy(
        title=title or "",
        description=description,
        choices=diagnoses,
        options=options,
        conditions=conditions,
    )


def _check_conditions(given: object, problems: list[Problem]) -> list[dict] | None:
    """study.json's "conditions" (None when absent: the default condition), each checked
    as ReadingCondition checks it (its fields, its constraints, codes and positions once
    per study). Appends to ``problems``."""
    if given is None:
        return None
    if not isinstance(given, list) or not given or not all(isinstance(c, dict) for c in given):
        problems.append(Problem(f"{STUDY_FILE}: conditions must be a non-empty list of objects"))
        return None
    rows = []
    for number, row in enumerate(given, start=1):
        where = f"{STUDY_FILE}: condition {number}"
        unknown = [key for key in row if key not in CONDITION_KEYS]
        if unknown:
            problems.append(
                Problem(
                    f"{where} has unknown key(s): {', '.join(map(str, unknown))} "
                    f"(allowed: {', '.join(CONDITION_KEYS)})"
                )
            )
            continue
        wrong = [
            key
            for key, value in row.items()
            if isinstance(ReadingCondition._meta.get_field(key), models.BooleanField)
            and not isinstance(value, bool)
        ]
        if wrong:
            problems.append(Problem(f"{where}: {', '.join(wrong)} must be true or false"))
            continue
        condition = ReadingCondition(**row)
        try:
            condition.full_clean(exclude=["study"], validate_constraints=False)
            for constraint in ReadingCondition._meta.constraints:
                if isinstance(constraint, models.CheckConstraint):
                    constraint.validate(ReadingCondition, condition, exclude=["study"])
        except ValidationError as exc:
            problems.append(Problem(f"{where}: " + "; ".join(exc.messages)))
            continue
        rows.append(row)
    for key in ("code", "position"):
        values = [row.get(key) for row in rows]
        if len(set(values)) != len(values):
            problems.append(Problem(f"{STUDY_FILE}: two conditions have the same {key}"))
    return rows
