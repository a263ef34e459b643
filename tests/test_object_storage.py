"""Media and reports in S3-compatible object storage (READERSTUDY_S3_BUCKET), against a
real S3 server: moto's, started by these tests on a free port of the loopback.

Case images, Grad-CAM maps and report files go into the bucket, nothing into the
media folder, and the same permission-checked views serve them from there; backups read
from one bucket and restore into another. Where moto is not installed the tests are
skipped, except where services are required (CI, `make test-postgres`): there they fail.
"""

from __future__ import annotations

import io
import json
import logging
import re
import socket
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse
from PIL import Image

from cases.importing import cases_import
from cases.models import Diagnosis
from cases.services import study_admin_add
from readerstudy.env import object_storage
from readerstudy.storage import folder_delete, folder_upload, local_path, stored_image
from tests.factories import build_study, enrol, good_rows, make_study, write_bundle
from tests.processes import instance_env, service_missing

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[1]
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test-key", "AWS_SECRET_ACCESS_KEY": "test-secret"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server in a thread of this process; its endpoint URL."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        service_missing(f"moto[server] is not installed ({exc}): pip install -e '.[dev]'")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


class Bucket:
    """A fresh bucket on the test server, and the environment that points at it."""

    def __init__(self, endpoint: str):
        import boto3

        self.name = f"rs-{uuid.uuid4().hex[:12]}"
        self.env = {
            "READERSTUDY_S3_BUCKET": self.name,
            "AWS_S3_ENDPOINT_URL": endpoint,
            "AWS_S3_REGION_NAME": "us-east-1",
            **CREDENTIALS,
        }
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
        self.client.create_bucket(Bucket=self.name)

    def objects(self) -> set[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name)
        return {entry["Key"] for page in pages for entry in page.get("Contents", ())}

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.name, Key=key)["Body"].read()


@pytest.fixture
def bucket(s3_server, settings, monkeypatch):
    """The default storage is a new bucket of the test server, configured as in
    production: through readerstudy.env.object_storage, credentials from the
    environment."""
    bucket = Bucket(s3_server)
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    settings.STORAGES = {**settings.STORAGES, "default": object_storage(environ=bucket.env)}
    return bucket


def local_files(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()] if folder.exists() else []


def body(response) -> bytes:
    return b"".join(response.streaming_content)


def png_bytes(colour=(200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 32), colour).save(out, format="PNG")
    return out.getvalue()


def make_admin(user, study):
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    study_admin_add(user=user, study=study)
    return user


def test_the_storage_has_no_local_paths(bucket):
    from django.core.files.storage import default_storage
    from storages.backends.s3 import S3Storage

    assert isinstance(default_storage, S3Storage)
    assert local_path("anything") is None


# --- case images ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "persona, variant, expected",
    [
        ("reader", "web", 200),
        ("reader", "thumb", 200),
        ("reader", "original", 404),
        ("study_admin", "original", 200),
        ("other_reader", "web", 404),
        ("other_study_admin", "web", 404),
        ("outsider", "web", 404),
        (None, "web", 404),
    ],
)
def test_imported_images_are_in_the_bucket_and_served_from_it_to_their_study_only(
    bucket, media_root, tmp_path, client, request, persona, variant, expected
):
    result = cases_import(
        slug="s3-study",
        source=write_bundle(tmp_path / "bundle", good_rows(2)),
        title="S3 study",
        choices=["MN", "SK", "BCC"],
    )
    study = result.study
    other = make_study(slug="other-study")
    enrol(study=study, user=request.getfixturevalue("reader"))
    enrol(study=other, user=request.getfixturevalue("other_reader"))
    make_admin(request.getfixturevalue("study_admin"), study)
    make_admin(request.getfixturevalue("other_study_admin"), other)
    image = study.cases.first().images.get(kind="dermoscopic")
    stored = {"web": image.web, "thumb": image.thumbnail, "original": image.original}[variant]
    keys = bucket.objects()
    assert {image.original.name, image.web.name, image.thumbnail.name} <= keys
    assert len(keys) == 3 * 2 * 2  # three files of each image, two images of each case
    assert local_files(media_root) == []

    if persona is not None:
        client.force_login(request.getfixturevalue(persona))
    response = client.get(reverse("cases:image", args=[image.public_id, variant]))
    assert response.status_code == expected
    if expected == 200:
        assert body(response) == bucket.read(stored.name)
        assert response["Cache-Control"] == "private, max-age=3600"


# --- Grad-CAM maps --------------------------------------------------------------------------


@pytest.mark.slow
def test_a_run_reads_images_from_the_bucket_and_writes_its_gradcam_maps_there(
    bucket, media_root, client, study_admin, other_study_admin, reader
):
    from inference.models import Prediction
    from inference.services import inference_run_start, model_register
    from inference.services.execution import inference_run_execute
    from tests.inference.factories import make_inference_study

    study = make_inference_study(slug="s3-inf", n=2)
    model = model_register(
        name="s3-tiny", arch="efficientnet_b4_aux", classes="MN,SK,BCC,SD", img_size=64
    )
    run = inference_run_start(model=model, study=study, enqueue=False)
    run = inference_run_execute(run_id=run.pk, batch_size=2)
    assert (run.status, run.done, run.failed) == ("done", 2, 0)
    predictions = list(Prediction.objects.filter(model=model))
    assert len(predictions) == 2 and all(p.gradcam for p in predictions)
    assert {p.gradcam.name for p in predictions} <= bucket.objects()
    assert local_files(media_root) == []

    make_admin(study_admin, study)
    make_admin(other_study_admin, make_study(slug="other-study"))
    enrol(study=study, user=reader)
    url = reverse("inference:gradcam", args=[predictions[0].pk])
    for user, expected in ((study_admin, 200), (other_study_admin, 404), (reader, 404)):
        client.force_login(user)
        response = client.get(url)
        assert response.status_code == expected, user
        if expected == 200:
            png = body(response)
            assert png == bucket.read(predictions[0].gradcam.name)
            assert Image.open(io.BytesIO(png)).format == "PNG"
            assert response["Cache-Control"] == "private, max-age=3600"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("reference_diagnoses", "empty_filesystem_queue")
def test_an_inference_worker_elsewhere_reads_and_writes_the_bucket_only(
    bucket, workers, media_root, settings
):
    """A GPU host as the README has it: its worker shares no media folder with the web
    host (only the bucket), consumes the inference queue, reads the case images from
    the bucket and writes its Grad-CAM maps there."""
    from inference.models import Prediction
    from inference.services import inference_run_start, model_register
    from tests.inference.factories import make_inference_study
    from tests.processes import wait_for

    worker_media = settings.READERSTUDY_WORKER_MEDIA_ROOT  # the worker's MEDIA_ROOT
    before = set(local_files(worker_media))
    study = make_inference_study(slug="s3-gpu", n=3)
    model = model_register(
        name="s3-gpu-tiny", arch="efficientnet_b4_aux", classes="MN,SK,BCC,SD", img_size=64
    )
    worker = workers(queue=settings.READERSTUDY_INFERENCE_QUEUE, env=bucket.env)
    run = inference_run_start(model=model, study=study, batch_size=2)
    wait_for(lambda: type(run).objects.get(pk=run.pk).status == "done", worker, "the run")
    maps = [p.gradcam.name for p in Prediction.objects.filter(model=model)]
    assert len(maps) == 3 and all(maps)
    assert set(maps) <= bucket.objects()
    for name in maps:
        assert Image.open(io.BytesIO(bucket.read(name))).format == "PNG"
    assert set(local_files(worker_media)) == before and local_files(media_root) == []


# --- reports --------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_report_is_uploaded_to_the_bucket_and_served_from_it(
    bucket, media_root, client, study_admin, other_study_admin, enqueued_reports
):
    from analysis.services import report_request
    from analysis.tasks import report_compute_task
    from tests.analysis.factories import build_db_study

    study = build_db_study(
        slug="s3-report", n_readers=2, per_class=3, embeddings=False, gradcam=png_bytes()
    )
    report = report_request(study=study, seed=0, n_bootstrap=20)
    assert report_compute_task(report_id=report.pk) == "done"
    report.refresh_from_db()

    # Every file under the report's folder in the bucket, the Grad-CAM gallery drawn
    # from the map in the bucket; nothing in the media folder.
    assert {"report.html", "summary.json", "per_class.csv"} <= set(report.files)
    gallery = [name for name in report.files if name.startswith("gradcam.")]
    roc = next(name for name in report.files if name.startswith("roc_"))
    assert gallery
    report_keys = {key for key in bucket.objects() if key.startswith(report.folder + "/")}
    assert report_keys == {f"{report.folder}/{name}" for name in report.files}
    assert local_files(media_root) == []
    with pytest.raises(NotImplementedError):
        report.path  # noqa: B018
    summary = json.loads(bucket.read(f"{report.folder}/summary.json"))
    assert set(gallery) <= set(summary["files"])

    make_admin(study_admin, study)
    make_admin(other_study_admin, make_study(slug="other-study"))
    assert gallery == ["gradcam.jpg"]
    for name in ("report.html", "per_class.csv", roc, *gallery):
        url = reverse("analysis:report_file", args=[report.pk, name])
        client.force_login(other_study_admin)
        assert client.get(url).status_code == 404
        client.force_login(study_admin)
        response = client.get(url)
        assert response.status_code == 200, name
        assert body(response) == bucket.read(f"{report.folder}/{name}")
        assert response["Cache-Control"] == "private, no-cache"
        if name == "gradcam.jpg":
            assert response["Content-Type"] == "image/jpeg"
    # a name the report did not write, or one whose object is gone, is a 404
    client.force_login(study_admin)
    assert client.get(reverse("analysis:report_file", args=[report.pk, "x.csv"])).status_code == 404
    bucket.client.delete_object(Bucket=bucket.name, Key=f"{report.folder}/per_class.csv")
    url = reverse("analysis:report_file", args=[report.pk, "per_class.csv"])
    assert client.get(url).status_code == 404


def test_a_folder_is_uploaded_whole_or_not_at_all_and_deleted_whole(bucket, tmp_path, monkeypatch):
    from django.core.files.storage import default_storage

    files = []
    for name in ("a.csv", "b.png", "c.json"):
        files.append(tmp_path / name)
        files[-1].write_bytes(name.encode())
    bucket.client.put_object(Bucket=bucket.name, Key="reports/r1/a.csv", Body=b"left over")
    assert folder_upload(folder="reports/r1", paths=files) == [
        "reports/r1/a.csv",
        "reports/r1/b.png",
        "reports/r1/c.json",
    ]
    assert bucket.read("reports/r1/a.csv") == b"a.csv"  # replaced, not renamed

    save = type(default_storage._wrapped).save

    def fail_on_c(self, name, content, **kwargs):
        if name.endswith("c.json"):
            raise OSError("the bucket went away")
        return save(self, name, content, **kwargs)

    monkeypatch.setattr(type(default_storage._wrapped), "save", fail_on_c)
    with pytest.raises(OSError, match="went away"):
        folder_upload(folder="reports/r2", paths=files)
    assert not any(key.startswith("reports/r2/") for key in bucket.objects())

    folder_delete("reports/r1")
    assert bucket.objects() == set()


def test_a_stored_image_is_read_from_the_bucket_and_none_when_gone(bucket):
    from inference.models import Prediction, RegisteredModel

    study = build_study(1)
    model = RegisteredModel.objects.create(
        name="cnn", arch="efficientnet_b4", classes=["MN", "SK", "BCC"], preprocessing={}
    )
    prediction = Prediction(
        model=model,
        case=study.cases.first(),
        choice=Diagnosis.objects.get(code="MN"),
        probabilities={"MN": 1.0},
        choice_probabilities={"MN": 1.0},
    )
    prediction.gradcam.save("cam.png", ContentFile(png_bytes()), save=True)
    with Image.open(stored_image(prediction.gradcam)) as image:
        assert image.size == (32, 32)
    bucket.client.delete_object(Bucket=bucket.name, Key=prediction.gradcam.name)
    assert stored_image(prediction.gradcam) is None


# --- backups --------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_backup_reads_the_bucket_and_restores_into_another_instances_bucket(
    bucket, s3_server, media_root, tmp_path
):
    from backups.services import backup_digest, backup_write
    from inference.models import Prediction, RegisteredModel

    study = build_study(2)
    model = RegisteredModel.objects.create(
        name="cnn", arch="efficientnet_b4_aux", classes=["MN", "SK", "BCC"], preprocessing={}
    )
    model.weights.save("w.pt", ContentFile(b"weights"), save=True)
    for case in study.cases.all():
        prediction = Prediction(
            model=model,
            case=case,
            choice=case.diagnosis,
            probabilities={"MN": 0.5, "SK": 0.3, "BCC": 0.2},
            choice_probabilities={"MN": 0.5, "SK": 0.3, "BCC": 0.2},
        )
        prediction.gradcam.save("cam.png", ContentFile(png_bytes()), save=True)
    first = tmp_path / "first.zip"
    backup_write(study=study, destination=first)
    with zipfile.ZipFile(first) as archive:
        stored = {name.removeprefix("files/") for name in archive.namelist()}
        assert bucket.objects() <= stored  # every object of this instance is in the backup
        for key in bucket.objects():
            assert archive.read(f"files/{key}") == bucket.read(key)
    assert local_files(media_root) == []

    other_bucket = Bucket(s3_server)
    other = tmp_path / "instance"
    env = instance_env(
        DJANGO_SETTINGS_MODULE="readerstudy.settings",
        READERSTUDY_DATA_DIR=str(other),
        DATABASE_URL=f"sqlite:///{other / 'db.sqlite3'}",
        **other_bucket.env,
    )
    for args in (
        ["migrate", "-v0"],
        ["restore_study", str(first)],
        ["backup_study", study.slug, str(tmp_path / "second.zip")],
    ):
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
    assert other_bucket.objects() == bucket.objects()
    assert local_files(other / "media") == []
    assert backup_digest(tmp_path / "second.zip") == backup_digest(first)


# --- settings -------------------------------------------------------------------------------


def test_object_storage_is_off_without_a_bucket():
    assert object_storage(environ={}) is None
    assert object_storage(environ={"READERSTUDY_S3_BUCKET": ""}) is None


def test_object_storage_options_are_private_and_never_overwrite():
    options = object_storage(
        environ={
            "READERSTUDY_S3_BUCKET": "readerstudy-media",
            "AWS_S3_ENDPOINT_URL": "https://s3.hospital.example:9000",
            "READERSTUDY_S3_PREFIX": "/site-a/",
        }
    )
    assert options["BACKEND"] == "storages.backends.s3.S3Storage"
    assert options["OPTIONS"] == {
        "bucket_name": "readerstudy-media",
        "endpoint_url": "https://s3.hospital.example:9000",
        "region_name": None,
        "addressing_style": None,
        "location": "site-a",
        "default_acl": None,
        "file_overwrite": False,
    }


@pytest.mark.parametrize(
    "env, message",
    [
        (
            {"READERSTUDY_S3_BUCKET": "My_Bucket"},
            "READERSTUDY_S3_BUCKET='My_Bucket' is not a bucket",
        ),
        ({"READERSTUDY_S3_BUCKET": "ab"}, "is not a bucket name"),
        (
            {"READERSTUDY_S3_BUCKET": "media", "AWS_S3_ENDPOINT_URL": "ftp://h"},
            "AWS_S3_ENDPOINT_URL has scheme 'ftp'",
        ),
        (
            {"READERSTUDY_S3_BUCKET": "media", "AWS_S3_ENDPOINT_URL": "http://"},
            "AWS_S3_ENDPOINT_URL='http://' has no host name",
        ),
        (
            {"READERSTUDY_S3_BUCKET": "media", "READERSTUDY_S3_PREFIX": "a/../b"},
            "READERSTUDY_S3_PREFIX='a/../b'",
        ),
        (
            {"READERSTUDY_S3_BUCKET": "media", "AWS_S3_ADDRESSING_STYLE": "dns"},
            "AWS_S3_ADDRESSING_STYLE='dns': use one of auto, path, virtual",
        ),
        (
            {"READERSTUDY_S3_BUCKET": "media", "AWS_ACCESS_KEY_ID": "key"},
            "set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither",
        ),
    ],
    ids=lambda value: "-".join(value) if isinstance(value, dict) else None,
)
def test_malformed_object_storage_settings_are_refused(env, message):
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match=re.escape(message)):
        object_storage(environ=env)


PRODUCTION = {
    "DJANGO_SECRET_KEY": "k3Jd9vQ2-xZ8pLm4Rt7wYb1Nc6Hs0Ga5Fe2Ui9Ko3Pq8Vj4Xl7Mz1Dy6Bw0Tr5Sn",
    "DJANGO_ALLOWED_HOSTS": "readerstudy.example.org",
    "DJANGO_SECURE": "1",
    "READERSTUDY_S3_BUCKET": "readerstudy-media",
    "AWS_S3_ENDPOINT_URL": "https://s3.hospital.example",
    **CREDENTIALS,
}


def _manage(*args: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=instance_env(
            READERSTUDY_DATA_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="readerstudy.settings", **env
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_production_settings_with_a_bucket_pass_the_deploy_check(tmp_path):
    result = _manage(
        "check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION, tmp_path=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    shown = _manage(
        "shell",
        "-c",
        "from django.core.files.storage import default_storage as s; "
        "print('storage:', s.__class__.__name__, s.bucket_name)",
        env=PRODUCTION,
        tmp_path=tmp_path,
    )
    assert "storage: S3Storage readerstudy-media" in shown.stdout.splitlines(), shown.stderr


@pytest.mark.slow
def test_a_malformed_bucket_setting_stops_the_start_up(tmp_path):
    result = _manage("check", env={"READERSTUDY_S3_BUCKET": "Bad_Name"}, tmp_path=tmp_path)
    assert result.returncode != 0
    assert "READERSTUDY_S3_BUCKET='Bad_Name' is not a bucket name" in result.stderr
