"""Full study backups: one zip with every row and file of a study and a checksum for each.

A backup holds the study, its choices, cases and images, pseudonymous readers (user
name = reader code, no e-mail, no password) and their profiles, enrolments, answers
with their change history, invitations, the registered models that predicted on it
(with their weights), inference runs, predictions with their Grad-CAM maps, and the
study's audit events (readers pseudonymous, client addresses left out). Study admins,
analysis reports (derived, recomputable) and other studies are not in it.

Restoring checks every checksum and every conflict before it writes anything, then
writes rows and files in one transaction; primary keys are kept, so a restored study
exported again gives the same backup (the comparison ``backup_digest`` makes).
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core import serializers
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import FileField, Model, Q

from audit.models import AuditEvent
from audit.services import audit_log
from cases.models import (
    Answer,
    AnswerChange,
    Case,
    CaseImage,
    Enrolment,
    Invitation,
    ReaderProfile,
    ReadingCondition,
    Study,
    StudyChoice,
)
from inference.models import ConditionSupport, InferenceRun, Prediction, RegisteredModel

FORMAT = "readerstudy-backup"
VERSION = 1
DATA = "data.json"
MANIFEST = "manifest.json"


class BackupError(ValueError):
    """A backup cannot be restored; the message says why. Nothing was written."""


@dataclass(frozen=True)
class RestoreResult:
    study: Study
    rows: int
    files: int


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _collect(study: Study) -> dict[str, list[Model]]:
    """Every row of the backup, by model label, in an order that restores cleanly."""
    enrolments = Enrolment.objects.filter(study=study)
    readers = get_user_model().objects.filter(enrolments__study=study).distinct()
    predictions = Prediction.objects.filter(case__study=study)
    supports = ConditionSupport.objects.filter(condition__study=study).values("model")
    models = RegisteredModel.objects.filter(
        Q(predictions__case__study=study) | Q(pk__in=supports)
    ).distinct()
    groups = {
        "auth.user": readers,
        "cases.readerprofile": ReaderProfile.objects.filter(user__in=readers),
        "cases.study": Study.objects.filter(pk=study.pk),
        "cases.studychoice": StudyChoice.objects.filter(study=study),
        "cases.readingcondition": ReadingCondition.objects.filter(study=study),
        "cases.case": Case.objects.filter(study=study),
        "cases.caseimage": CaseImage.objects.filter(case__study=study),
        "cases.invitation": Invitation.objects.filter(study=study),
        "cases.enrolment": enrolments,
        "cases.answer": Answer.objects.filter(enrolment__study=study),
        "cases.answerchange": AnswerChange.objects.filter(answer__enrolment__study=study),
        "inference.registeredmodel": models,
        "inference.conditionsupport": ConditionSupport.objects.filter(condition__study=study),
        "inference.inferencerun": InferenceRun.objects.filter(study=study),
        "inference.prediction": predictions,
        "audit.auditevent": AuditEvent.objects.filter(study=study.slug),
    }
    return {label: list(rows.order_by("pk")) for label, rows in groups.items()}


def _pseudonymise(records: list[dict], pseudonyms: dict[str, str]) -> list[dict]:
    """Replace readers' user names with their reader codes everywhere they occur, and
    drop what identifies a person or belongs to this instance only."""

    def swap(value: Any) -> Any:
        # natural keys of users come as one-element tuples (lists once through JSON)
        if isinstance(value, list | tuple) and len(value) == 1 and value[0] in pseudonyms:
            return [pseudonyms[value[0]]]
        return list(value) if isinstance(value, tuple) else value

    out = []
    for record in records:
        fields = dict(record["fields"])
        model = record["model"]
        if model == "auth.user":
            fields = {
                "username": pseudonyms[fields["username"]],
                "is_active": False,
                "password": "!",
                "email": "",
                "first_name": "",
                "last_name": "",
                "is_staff": False,
                "is_superuser": False,
                "last_login": None,
                "date_joined": fields["date_joined"],
                "groups": [],
                "user_permissions": [],
            }
        elif model == "cases.study":
            fields["admins"] = []
        elif model == "cases.invitation":
            fields["created_by"] = None
        elif model == "audit.auditevent":
            fields["actor"] = None
            fields["ip"] = None
            fields["user_agent"] = ""
            fields["actor_name"] = pseudonyms.get(fields["actor_name"], fields["actor_name"])
            for key in ("before", "after"):
                if isinstance(fields.get(key), dict) and "admin" in fields[key]:
                    fields[key] = {**fields[key], "admin": "(study admin)"}
        fields = {key: swap(value) for key, value in fields.items()}
        out.append({"model": model, "pk": record["pk"], "fields": fields})
    return out


def _files_of(rows: list[Model]) -> list[str]:
    names = []
    for row in rows:
        for field in row._meta.fields:
            if isinstance(field, FileField):
                name = getattr(row, field.name).name
                if name:
                    names.append(name)
    return names


def backup_write(*, study: Study, destination: Path | str, actor_name: str = "system") -> dict:
    """Write the backup of ``study`` to ``destination`` (a .zip); returns the manifest."""
    groups = _collect(study)
    pseudonyms = {
        e.reader.get_username(): e.reader_code
        for e in Enrolment.objects.filter(study=study).select_related("reader")
    }
    records = []
    for label, rows in groups.items():
        serialised = serializers.serialize(
            "python",
            rows,
            use_natural_foreign_keys=True,
            use_natural_primary_keys=(label == "auth.user"),
        )
        for record in serialised:
            record.setdefault("pk", None)
        records += _pseudonymise(serialised, pseudonyms)
    data = json.dumps(
        {"records": records}, sort_keys=True, indent=1, ensure_ascii=False, default=str
    ).encode()
    files = sorted({name for rows in groups.values() for name in _files_of(rows)})
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "study": study.slug,
        "counts": {label: len(rows) for label, rows in groups.items()},
        "sha256": {DATA: _sha256(data)},
    }
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(DATA, data)
        for name in files:
            with default_storage.open(name, "rb") as handle:
                content = handle.read()
            manifest["sha256"][f"files/{name}"] = _sha256(content)
            archive.writestr(f"files/{name}", content, compress_type=zipfile.ZIP_STORED)
        archive.writestr(MANIFEST, json.dumps(manifest, sort_keys=True, indent=1))
    partial.replace(destination)
    audit_log(
        action=AuditEvent.Action.EXPORT_DOWNLOAD,
        actor_name=actor_name,
        study=study.slug,
        obj=study,
        after={
            "export": "backup",
            "path": str(destination),
            "rows": sum(manifest["counts"].values()),
            "files": len(files),
        },
    )
    return manifest


def backup_digest(path: Path | str) -> str:
    """A checksum of what a backup holds (its manifest's checksums, without the
    backup's own export event), for comparing two backups of the same study."""
    with zipfile.ZipFile(path) as archive:
        manifest = json.loads(archive.read(MANIFEST))
        records = json.loads(archive.read(DATA))["records"]
    kept = [
        r
        for r in records
        if not (
            r["model"] == "audit.auditevent"
            and (r["fields"].get("after") or {}).get("export") == "backup"
        )
    ]
    files = {k: v for k, v in manifest["sha256"].items() if k != DATA}
    payload = json.dumps({"records": kept, "files": files}, sort_keys=True, default=str)
    return _sha256(payload.encode())


def _read(path: Path | str) -> tuple[dict, list[dict], dict[str, bytes]]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, FileNotFoundError, IsADirectoryError) as exc:
        raise BackupError(f"{path} is not a backup archive ({exc})") from None
    with archive:
        names = set(archive.namelist())
        if MANIFEST not in names or DATA not in names:
            raise BackupError(f"{path} lacks {MANIFEST} or {DATA}: not a study backup")
        manifest = json.loads(archive.read(MANIFEST))
        if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
            raise BackupError(
                f"unsupported backup format {manifest.get('format')!r} "
                f"version {manifest.get('version')!r}"
            )
        problems = []
        contents: dict[str, bytes] = {}
        for name, digest in sorted(manifest["sha256"].items()):
            if name not in names:
                problems.append(f"{name} is listed but missing")
                continue
            content = archive.read(name)
            if _sha256(content) != digest:
                problems.append(f"{name} does not match its checksum")
            contents[name] = content
        unlisted = sorted(names - set(manifest["sha256"]) - {MANIFEST})
        problems += [f"{name} is not listed in the manifest" for name in unlisted]
        if problems:
            raise BackupError("the backup is damaged: " + "; ".join(problems))
    records = json.loads(contents.pop(DATA))["records"]
    files = {name.removeprefix("files/"): content for name, content in contents.items()}
    return manifest, records, files


def _conflicts(manifest: dict, records: list[dict]) -> list[str]:
    problems = []
    if Study.objects.filter(slug=manifest["study"]).exists():
        problems.append(f"a study {manifest['study']!r} exists already")
    by_model: dict[str, list] = {}
    for record in records:
        if record["model"] != "auth.user":
            by_model.setdefault(record["model"], []).append(record["pk"])
    from django.apps import apps

    for label, pks in by_model.items():
        model = apps.get_model(label)
        taken = model._base_manager.filter(pk__in=pks).count()
        if taken:
            problems.append(
                f"{taken} {model._meta.verbose_name_plural} with the same ids "
                "exist already (restore into an empty instance)"
            )
    names = [r["fields"]["name"] for r in records if r["model"] == "inference.registeredmodel"]
    if RegisteredModel.objects.filter(name__in=names).exists():
        problems.append("a registered model with the same name exists already")
    return problems


def _default_condition(enrolment_id: int) -> ReadingCondition:
    """For a backup made before reading conditions (its answers name none): the study's
    default condition, as migration cases 0010 gave every study, made once."""
    return ReadingCondition.default_for(Study.objects.get(enrolments=enrolment_id))


def backup_restore(*, source: Path | str, actor_name: str = "system") -> RestoreResult:
    """Restore a backup into this instance; all or nothing."""
    manifest, records, files = _read(source)
    problems = _conflicts(manifest, records)
    existing_files = [name for name in files if default_storage.exists(name)]
    if existing_files:
        problems.append(f"{len(existing_files)} file(s) exist already in the media folder")
    if problems:
        raise BackupError("cannot restore: " + "; ".join(problems))
    written: list[str] = []
    try:
        with transaction.atomic():
            for obj in serializers.deserialize("python", records, handle_forward_references=True):
                if isinstance(obj.object, Answer) and obj.object.condition_id is None:
                    obj.object.condition = _default_condition(obj.object.enrolment_id)
                obj.save()
            for name, content in sorted(files.items()):
                saved = default_storage.save(name, ContentFile(content))
                written.append(saved)
                if saved != name:
                    raise BackupError(f"the media folder renamed {name} to {saved}")
            study = Study.objects.get(slug=manifest["study"])
            audit_log(
                action=AuditEvent.Action.BACKUP_RESTORE,
                actor_name=actor_name,
                object_type="backup",
                after={"study": study.slug, "rows": len(records), "files": len(files)},
            )
    except BaseException:
        for name in written:
            default_storage.delete(name)
        raise
    return RestoreResult(study=study, rows=len(records), files=len(files))
