"""`demo --no-serve` builds the 200-case synthetic study, reproducibly; `demo` serves it
and Ctrl-C stops everything it started; the study is marked synthetic wherever it shows."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from cases.importing.imaging import THUMB_MAX_SIDE, derivative_jpeg
from cases.models import Answer, Diagnosis, Enrolment, Study
from demo.images import THUMB_SIDE, make_case_images
from demo.services import demo_build, demo_case_images, demo_cases, demo_reset, demo_seed
from tests.processes import instance_env

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
BANNER = "Demo study: every image is synthetic (generated), not a patient photo."


def test_demo_no_serve_builds_the_study_and_is_safe_to_run_again(settings, tmp_path, capsys):
    settings.DATA_DIR = tmp_path
    # The AI-assisted study (which runs the CNN here) has its own tests: test_aided_demo.
    call_command("demo", "--no-serve", "--seed", "3", "--readers", "5", "--no-aided")
    out = capsys.readouterr().out
    study = Study.objects.get(slug="demo")
    assert study.is_synthetic and study.status == Study.Status.OPEN
    assert study.choice_codes() == ["MN", "SK", "BCC", "EAD", "SD", "Pso", "VW", "Rosa"]
    counts = Counter(study.cases.values_list("diagnosis__code", flat=True))
    assert counts == dict.fromkeys(study.choice_codes(), 25)
    assert all(case.images.count() == 2 for case in study.cases.all())
    # Simulated readers answered every case; the demo reader has not started.
    simulated = Enrolment.objects.filter(study=study, reader__reader_profile__is_simulated=True)
    assert simulated.count() == 5 and all(e.finished_at for e in simulated)
    assert Answer.objects.filter(enrolment__in=simulated).count() == 5 * 200
    reader = get_user_model().objects.get(username="reader")
    assert Enrolment.objects.get(study=study, reader=reader).answers.count() == 0
    # The printed logins work.
    credentials = (tmp_path / "demo-credentials.json").read_text()
    assert "SYNTHETIC DATA" in out and "'admin'" in out
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and f"password {credentials.split(chr(34))[3]!r}" in out
    assert (
        "Built demo study 'demo': 200 synthetic cases, 5 simulated readers, built from seed 3."
    ) in out
    assert demo_seed(study) == 3

    # Same seed, same study: the stored images are the ones the seed generates.
    first = study.cases.order_by("position").first()
    expected = demo_cases(seed=3)[0]
    assert (first.source_id, first.diagnosis.code) == (expected.case_id, expected.code)
    clinical, dermoscopic = demo_case_images(expected, seed=3)
    assert first.images.get(kind="dermoscopic").sha256 == hashlib.sha256(dermoscopic).hexdigest()
    assert first.images.get(kind="clinical").sha256 == hashlib.sha256(clinical).hexdigest()

    # Running again keeps the study and the passwords.
    call_command("demo", "--no-serve", "--seed", "3", "--readers", "5", "--no-aided")
    assert Study.objects.filter(slug="demo").count() == 1 and study.cases.count() == 200
    assert (tmp_path / "demo-credentials.json").read_text() == credentials

    # ... and queues no second run of the demo CNN: the first is in progress, also once
    # its worker stopped (marked running, silent for long: the worker resumes it).
    from inference.models import InferenceRun

    run = InferenceRun.objects.get()
    assert f"Run {run.pk} of demo-effb4-aux-untrained (untrained) on demo is queued" in (
        capsys.readouterr().out
    )
    InferenceRun.objects.filter(pk=run.pk).update(
        status="running", worker="demo@host", heartbeat_at=timezone.now() - dt.timedelta(days=1)
    )
    call_command("demo", "--no-serve", "--readers", "5", "--no-aided")
    assert InferenceRun.objects.get().pk == run.pk
    assert f"Run {run.pk} of demo-effb4-aux-untrained (untrained) on demo is running" in (
        capsys.readouterr().out
    )
    # A complete set of predictions needs no run at all.
    InferenceRun.objects.filter(pk=run.pk).update(status="failed")
    with mock.patch("demo.management.commands.demo_models.inference_run_start") as start:
        _predict_every_case(study)
        call_command("demo", "--no-serve", "--readers", "5", "--no-aided")
    start.assert_not_called()
    assert "has predicted every case of demo" in capsys.readouterr().out


def _predict_every_case(study) -> None:
    from inference.models import Prediction, RegisteredModel

    model = RegisteredModel.objects.get(name="demo-effb4-aux-untrained")
    mn = Diagnosis.objects.get(code="MN")
    for case in study.cases.exclude(predictions__model=model):
        Prediction.objects.create(model=model, case=case, choice=mn, probabilities={"MN": 1.0})


def test_demo_cases_interleave_classes_and_depend_on_the_seed():
    cases = demo_cases(seed=0)
    assert len(cases) == 200 and len({c.case_id for c in cases}) == 200
    assert [c.code for c in cases[:8]] != sorted(c.code for c in cases[:8])
    assert [c.code for c in demo_cases(seed=0)] == [c.code for c in cases]
    assert [c.code for c in demo_cases(seed=1)] != [c.code for c in cases]


def study_digest(study: Study) -> str:
    """sha256 of everything the seed decides in a built demo study: the study's texts and
    choices; each case in study order with its metadata and image hashes; each simulated
    reader's profile, case order and answers. Not the public ids (random by design),
    primary keys or timestamps."""
    source_id = dict(study.cases.values_list("pk", "source_id"))
    rows: list[object] = [study.title, study.description, study.admin_notes, study.choice_codes()]
    for case in study.cases.order_by("position").prefetch_related("images"):
        images = sorted((i.kind, i.sha256, i.width, i.height) for i in case.images.all())
        rows.append(
            [
                case.position,
                case.source_id,
                case.diagnosis.code,
                case.age,
                case.sex,
                case.site,
                case.histopathology,
                images,
            ]
        )
    simulated = Enrolment.objects.filter(study=study, reader__reader_profile__is_simulated=True)
    for enrolment in simulated.select_related("reader__reader_profile").order_by(
        "reader__username"
    ):
        profile = enrolment.reader.reader_profile
        rows.append(
            [
                enrolment.reader.username,
                profile.level,
                profile.years_in_dermatology,
                profile.dermoscopy_training_hours,
                enrolment.order_seed,
                [source_id[pk] for pk in enrolment.case_order],
            ]
        )
        answers = enrolment.answers.order_by("case__position")
        rows.append(
            list(answers.values_list("case__source_id", "diagnosis__code", "seconds", "confidence"))
        )
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def test_same_seed_same_study_different_seed_another(tmp_path):
    # Whole builds, small ones (2 cases per class, 3 readers), so three fit in a test.
    def build(seed: int) -> str:
        demo_reset()
        study = demo_build(seed=seed, n_readers=3, per_class=2, data_dir=tmp_path).study
        assert study.cases.count() == 16 and study.enrolments.count() == 4
        return study_digest(study)

    first = build(3)
    assert build(3) == first
    assert build(4) != first


def test_demo_with_another_seed_keeps_the_study_and_says_how_to_rebuild(settings, tmp_path, capsys):
    settings.DATA_DIR = tmp_path
    demo_build(seed=2, n_readers=1, per_class=1, data_dir=tmp_path)
    kept = "Kept the existing demo study 'demo': 8 synthetic cases, 1 simulated readers, "

    call_command("demo", "--no-serve", "--no-models", "--seed", "5")
    out = capsys.readouterr().out
    assert kept + "built from seed 2." in out
    assert (
        "WARNING: --seed 5 was not used: the existing demo study, built from seed 2, is kept "
        "as it is. To rebuild it from seed 5: manage.py demo --reset --seed 5 (or `make "
        "clean-demo`, which deletes var/ with the whole demo database)."
    ) in out
    assert demo_seed(Study.objects.get(slug="demo")) == 2

    # The same seed, or none: nothing to warn about.
    for args in (["--seed", "2"], []):
        call_command("demo", "--no-serve", "--no-models", *args)
        out = capsys.readouterr().out
        assert kept + "built from seed 2." in out and "WARNING" not in out

    # A study whose admin notes no longer say its seed.
    Study.objects.filter(slug="demo").update(admin_notes="Edited by an admin.")
    call_command("demo", "--no-serve", "--no-models", "--seed", "5")
    out = capsys.readouterr().out
    assert kept + "built from an unrecorded seed." in out
    assert "WARNING: --seed 5 was not used: the existing demo study, built from an " in out


def test_reset_also_deletes_cnn_runs_predictions_and_reports_of_the_demo(
    tmp_path, django_capture_on_commit_callbacks
):
    # What `make demo` leaves: the demo CNN's queued run, later predictions (with Grad-CAM
    # maps) and reports; each protects the study or its cases from deletion.
    from django.core.files.base import ContentFile

    from analysis.models import AnalysisReport
    from inference.models import InferenceRun, Prediction, RegisteredModel

    study = demo_build(seed=1, n_readers=1, per_class=1, data_dir=tmp_path).study
    model = RegisteredModel.objects.create(
        name="demo-cnn", arch="efficientnet_b4_aux", classes=["MN"], preprocessing={}
    )
    run = InferenceRun.objects.create(model=model, study=study)
    case = study.cases.first()
    prediction = Prediction(model=model, case=case, run=run, choice=case.diagnosis)
    prediction.gradcam.save("cam.png", ContentFile(b"png"), save=True)
    report = AnalysisReport.objects.create(study=study, fingerprint="f" * 64)
    report.path.mkdir(parents=True)
    (report.path / "report.html").write_text("report")
    image = case.images.first().original
    files = [prediction.gradcam.path, image.path]
    assert all(Path(f).exists() for f in files)

    with django_capture_on_commit_callbacks(execute=True):
        assert demo_reset() is True
    assert not Study.objects.filter(slug="demo").exists()
    assert not InferenceRun.objects.exists() and not Prediction.objects.exists()
    assert not AnalysisReport.objects.exists() and not report.path.exists()
    assert not any(Path(f).exists() for f in files)
    assert RegisteredModel.objects.filter(name="demo-cnn").exists()  # not the demo's own
    # ...and the demo builds again.
    assert demo_build(seed=2, n_readers=1, per_class=1, data_dir=tmp_path).created


def test_demo_refuses_a_negative_seed(tmp_path):
    with pytest.raises(CommandError, match=r"^--seed -1: use a whole number from 0 up$"):
        call_command("demo", "--no-serve", "--seed", "-1")
    assert not Study.objects.filter(slug="demo").exists()


CASE_BADGE = "Demo: synthetic images, not patient photos; no CNN trained on real data"


def test_reader_pages_of_a_synthetic_study_show_the_banner(client, settings, tmp_path):
    settings.DATA_DIR = tmp_path
    study = demo_build(seed=1, n_readers=0, per_class=1, data_dir=tmp_path).study
    client.force_login(get_user_model().objects.get(username="reader"))
    pages = {
        "consent": {"agree": "on"},
        "profile": {"level": "attending", "years_in_dermatology": "6"},
    }
    for name, answers in pages.items():
        url = reverse(f"cases:{name}", args=[study.slug])
        assert BANNER in client.get(url).content.decode(), name
        response = client.post(url, answers)
        assert response.status_code == 302, response.content.decode()
    case_url = reverse("cases:case", args=[study.slug])
    assert response.url == case_url
    # the case page, which must fit one screen, says it in a badge beside the progress
    assert CASE_BADGE in client.get(case_url).content.decode()
    # ...and only there: the same page of a real study has none.
    Study.objects.filter(pk=study.pk).update(is_synthetic=False)
    page = client.get(case_url).content.decode()
    assert BANNER not in page and CASE_BADGE not in page


def _thumbnail(image: Image.Image) -> np.ndarray:
    """Grey levels of the admin's thumbnail of ``image``, made as the importer makes it."""
    original = io.BytesIO()
    image.save(original, format="JPEG", quality=90)
    thumb = derivative_jpeg(original.getvalue(), max_side=THUMB_MAX_SIDE, quality=80)
    return np.asarray(Image.open(io.BytesIO(thumb)).convert("L"), dtype=float)


def test_watermark_is_legible_in_the_admin_thumbnails():
    assert THUMB_SIDE == THUMB_MAX_SIDE  # demo.images repeats it
    marked = make_case_images("MN", rng=np.random.default_rng(5))
    plain = make_case_images("MN", rng=np.random.default_rng(5), watermark=False)
    for with_mark, without in zip(marked, plain, strict=True):
        thumb = _thumbnail(with_mark)
        ys, xs = np.nonzero(np.abs(thumb - _thumbnail(without)) > 40)
        # "SYNTHETIC" about 60 px wide in a 256 px thumbnail: some 6 px a letter (the
        # earlier fixed-size mark was about 25 px, a smudge). Still a corner mark.
        width = xs.max() - xs.min() + 1
        assert 50 <= width <= 0.3 * thumb.shape[1], width
        assert ys.min() > 0.85 * thumb.shape[0] and xs.min() > 0.6 * thumb.shape[1]


# --- serving ---------------------------------------------------------------------------

# A small demo study in a fresh data folder, so that `demo` finds it and goes straight
# to serving (the 200-case build is tested above).
SEED_SMALL_DEMO = """
import django
django.setup()
from django.conf import settings
from django.core.management import call_command
from demo.services import demo_build
call_command("migrate", interactive=False, verbosity=0)
demo_build(seed=4, n_readers=1, per_class=1, data_dir=settings.DATA_DIR)
"""
SERVE_TIMEOUT = 240  # seconds: the worker imports torch and timm on a loaded machine


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _processes() -> list[tuple[int, int, int, str]]:
    """(pid, parent pid, process group, command) of every live process; zombies (exited,
    not yet reaped) count as gone."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # exited meanwhile
            continue
        command = stat[stat.index("(") + 1 : stat.rindex(")")]
        state, ppid, pgrp = stat[stat.rindex(")") + 2 :].split()[:3]
        if state != "Z":
            found.append((int(entry.name), int(ppid), int(pgrp), command))
    return found


def _health(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/", timeout=5) as response:
            return response.status
    except (urllib.error.URLError, OSError):
        return None


def _ignore_sigint() -> None:
    # What a shell does to a job it starts in the background (`make demo &`).
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# Within this many seconds of the signal, nothing of the demo may be left.
STOPPED_WITHIN = 10


@pytest.mark.parametrize(
    "stop", ["ctrl_c", "ctrl_c_twice", "sigterm", "ctrl_c_from_a_shell_that_ignores_it"]
)
def test_demo_serves_web_and_worker_and_one_signal_stops_them_all(tmp_path, stop):
    env = instance_env(
        DJANGO_SETTINGS_MODULE="readerstudy.settings",
        READERSTUDY_DATA_DIR=str(tmp_path / "var"),
        PYTHONUNBUFFERED="1",
    )
    subprocess.run(
        [sys.executable, "-c", SEED_SMALL_DEMO], cwd=ROOT, env=env, check=True, timeout=300
    )
    port = _free_port()
    log_path = tmp_path / "demo.log"
    with open(log_path, "wb") as log:
        # Its own session, as a terminal gives a command its own process group.
        demo = subprocess.Popen(
            [sys.executable, "manage.py", "demo", "--no-models", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_ignore_sigint if stop == "ctrl_c_from_a_shell_that_ignores_it" else None,
        )
    groups = {demo.pid}
    try:
        deadline = time.monotonic() + SERVE_TIMEOUT
        while not (_health(port) == 200 and re.search(r"demo@\S+ ready\.", log_path.read_text())):
            assert demo.poll() is None, f"demo exited early:\n{log_path.read_text()}"
            assert time.monotonic() < deadline, f"not serving:\n{log_path.read_text()}"
            time.sleep(0.5)
        children = [p for p in _processes() if p[1] == demo.pid]
        commands = sorted(command for _, _, _, command in children)
        assert len(children) == 2, children  # the web server and the worker
        # The web server and the worker, each in its own group (with the embedded beat).
        groups |= {pgrp for _, _, pgrp, _ in children}
        assert len(groups) == 3, (children, commands)
        # The worker's embedded beat: a child of the worker, in the worker's group.
        assert [p for p in _processes() if p[1] in groups - {demo.pid}], _processes()

        signalled = time.monotonic()
        if stop == "sigterm":
            demo.send_signal(signal.SIGTERM)  # `kill PID`
        else:
            os.killpg(demo.pid, signal.SIGINT)  # what Ctrl-C in its terminal does
            if stop == "ctrl_c_twice":
                time.sleep(0.5)
                os.killpg(demo.pid, signal.SIGINT)
        assert demo.wait(timeout=STOPPED_WITHIN) == 0, log_path.read_text()
        while left := [p for p in _processes() if p[2] in groups]:
            assert time.monotonic() - signalled < STOPPED_WITHIN, f"still running: {left}"
            time.sleep(0.1)
    finally:
        for group in groups:  # only left when the test failed
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        demo.wait(timeout=30)
    out = log_path.read_text()
    assert "built from seed 4." in out and "Serving; press Ctrl-C" in out
    assert "Stopped." in out
    assert "Traceback" not in out and "exited with" not in out, out
    assert _health(port) is None


def test_make_demo_passes_its_options_through():
    def dry_run(*assignments: str) -> str:
        # Not as a sub-make of `make test`: no inherited flags, no directory lines.
        env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}}
        done = subprocess.run(
            ["make", "--no-print-directory", "-n", "demo", *assignments, "STAMP=/dev/null"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        return next(line for line in done.stdout.splitlines() if "manage.py demo" in line).strip()

    assert dry_run().endswith("manage.py demo")
    assert dry_run("PORT=8101", "SEED=3").endswith("manage.py demo --port 8101 --seed 3")
    assert dry_run("READERS=10", "RESET=1", "NO_MODELS=1", "DEMO_ARGS=--no-serve").endswith(
        "manage.py demo --readers 10 --reset --no-models --no-serve"
    )


def test_simulated_readers_consent_answer_and_finish_in_that_order(tmp_path):
    from django.db.models import Max

    from cases.models import Enrolment

    demo_build(seed=2, n_readers=3, per_class=1, data_dir=tmp_path)
    simulated = Enrolment.objects.filter(reader__reader_profile__is_simulated=True).annotate(
        last_answer=Max("answers__answered_at")
    )
    assert simulated.count() == 3
    for enrolment in simulated:
        assert enrolment.consented_at <= enrolment.last_answer <= enrolment.finished_at
