"""The bundle's two text files: ``cases.csv`` (one row per case) and the optional
``study.json`` (the settings of a study the import creates). Their columns and keys are
defined here, for import and export alike; reading them refuses what cannot be parsed,
and leaves checking the values to ``validation``.
"""

from __future__ import annotations

import csv
import io
import json

from cases.importing.bundles import MANIFEST, STUDY_FILE, Bundle, BundleError
from cases.importing.report import ImportRejected, Problem
from cases.models import ReadingCondition

REQUIRED_COLUMNS = ("case_id", "diagnosis", "clinical_image", "dermoscopic_image")
OPTIONAL_COLUMNS = ("age", "sex", "site", "histopathology")
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
    "admin_notes",
    "design",
    "washout_days",
)
# study.json's "conditions": a list of the study's reading conditions, each an object
# with these keys (absent: the model's default); absent, the study has the default one.
CONDITION_KEYS = ReadingCondition.SETTINGS
STUDY_FILE_KEYS = ("title", "description", "choices", "conditions", *STUDY_OPTIONS)
# cases.csv and study.json are read whole; a real case list is far below this.
MAX_MANIFEST_BYTES = 16 * 1024 * 1024


def read_small_file(bundle: Bundle, name: str) -> bytes | None:
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


def read_manifest(bundle: Bundle) -> tuple[list[str], list[dict[str, str]]]:
    """The header (lower-cased column names) and the rows of ``cases.csv``, values
    stripped; a row with more fields than the header is ``{"__extra__": "1"}``."""
    raw = read_small_file(bundle, MANIFEST)
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


def read_study_file(bundle: Bundle) -> dict:
    """The JSON object in ``study.json``; an empty dict when the bundle has none."""
    raw = read_small_file(bundle, STUDY_FILE)
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
