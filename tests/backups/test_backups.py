"""Full study backups round-trip into an empty instance; damage and conflicts are
refused with nothing written."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.management import CommandError, call_command

from audit.models import AuditEvent
from backups.services import BackupError, backup_digest, backup_restore, backup_write
from cases.models import Case, Diagnosis, Study
from cases.services import answer_submit, invitations_create
from inference.models import InferenceRun, Prediction, RegisteredModel
from tests.factories import build_study, ready_enrolment
from tests.processes import instance_env

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def full_study(reader, other_reader, admin_user):
    study = build_study(3, allow_answer_changes=True)
    for user in (reader, other_reader):
        enrolment = ready_enrolment(study, user)
        first = Case.objects.get(pk=enrolment.case_order[0]).public_id
        answer_submit(enrolment=enrolment, case_public_id=first, diagnosis_code="MN")
    answer_submit(enrolment=enrolment, case_public_id=first, diagnosis_code="SK")  # a change
    invitations_create(study=study, count=2, created_by=admin_user)
    study.admins.add(admin_user)
    model = RegisteredModel.objects.create(
        name="cnn",
        arch="efficientnet_b4_aux",
        classes=["MN", "SK", "BCC"],
        preprocessing={"input_size": 64},
        weights_source="random",
    )
    model.weights.save("w.pt", ContentFile(b"weights"), save=True)
    run = InferenceRun.objects.create(model=model, study=study, status="done", total=3, done=3)
    mn = Diagnosis.objects.get(code="MN")
    for case in study.cases.all():
        prediction = Prediction(
            model=model,
            case=case,
            run=run,
            choice=mn,
            probabilities={"MN": 0.7, "SK": 0.2, "BCC": 0.1},
            choice_probabilities={"MN": 0.7, "SK": 0.2, "BCC": 0.1},
            embedding=np.arange(4, dtype="<f4").tobytes(),
            seconds=0.5,
        )
        prediction.gradcam.save(
            "cam.png", ContentFile(b"png-" + case.public_id.encode()), save=False
        )
        prediction.save()
    return study


def _run(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_backup_round_trips_into_an_empty_instance(full_study, tmp_path):
    first = tmp_path / "first.zip"
    manifest = backup_write(study=full_study, destination=first)
    assert manifest["counts"]["cases.answer"] == 2
    assert manifest["counts"]["cases.answerchange"] == 1
    assert manifest["counts"]["inference.prediction"] == 3
    assert manifest["counts"]["audit.auditevent"] > 5

    other = tmp_path / "instance"
    env = instance_env()
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "readerstudy.settings",
            "READERSTUDY_DATA_DIR": str(other),
            "DATABASE_URL": f"sqlite:///{other / 'db.sqlite3'}",
        }
    )
    for args in (
        ["migrate", "-v0"],
        ["restore_study", str(first)],
        ["backup_study", full_study.slug, str(tmp_path / "second.zip")],
    ):
        result = _run(*args, env=env)
        assert result.returncode == 0, result.stderr
    assert backup_digest(tmp_path / "second.zip") == backup_digest(first)


def test_backup_is_pseudonymous(full_study, tmp_path, django_user_model):
    named = django_user_model.objects.create_user("dr-zhang-unique", email="zhang@example.org")
    ready_enrolment(full_study, named)
    path = tmp_path / "b.zip"
    backup_write(study=full_study, destination=path)
    with zipfile.ZipFile(path) as archive:
        data = archive.read("data.json").decode()
        manifest = json.loads(archive.read("manifest.json"))
    assert "dr-zhang-unique" not in data and "zhang@example.org" not in data
    assert "127.0.0.1" not in data
    assert all(len(v) == 64 for v in manifest["sha256"].values())
    codes = set(full_study.enrolments.values_list("reader_code", flat=True))
    users = [r for r in json.loads(data)["records"] if r["model"] == "auth.user"]
    assert {u["fields"]["username"] for u in users} == codes


def test_a_damaged_backup_is_refused_and_nothing_written(full_study, tmp_path, media_root):
    path, damaged = tmp_path / "b.zip", tmp_path / "damaged.zip"
    backup_write(study=full_study, destination=path)
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(damaged, "w") as target:
        for item in source.infolist():
            content = source.read(item)
            if item.filename.startswith("files/cases/"):
                content = content[:-1] + b"x"
            target.writestr(item, content)
    before = (Study.objects.count(), AuditEvent.objects.count())
    with pytest.raises(BackupError, match="does not match its checksum"):
        backup_restore(source=damaged)
    assert (Study.objects.count(), AuditEvent.objects.count()) == before


def test_restoring_over_existing_data_is_refused(full_study, tmp_path):
    path = tmp_path / "b.zip"
    backup_write(study=full_study, destination=path)
    with pytest.raises(CommandError, match="a study 'study' exists already"):
        call_command("restore_study", str(path))


def test_not_a_backup(tmp_path):
    (tmp_path / "x.zip").write_bytes(b"nope")
    with pytest.raises(CommandError, match="not a backup archive"):
        call_command("restore_study", str(tmp_path / "x.zip"))
