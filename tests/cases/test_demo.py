"""`demo --no-serve` builds the 200-case synthetic study, reproducibly."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from cases.demo import demo_case_images, demo_cases
from cases.models import Answer, Enrolment, Study

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def test_demo_no_serve_builds_the_study_and_is_safe_to_run_again(settings, tmp_path, capsys):
    settings.DATA_DIR = tmp_path
    call_command("demo", "--no-serve", "--seed", "3", "--readers", "5")
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

    # Same seed, same study: the stored images are the ones the seed generates.
    first = study.cases.order_by("position").first()
    expected = demo_cases(seed=3)[0]
    assert (first.source_id, first.diagnosis.code) == (expected.case_id, expected.code)
    clinical, dermoscopic = demo_case_images(expected, seed=3)
    assert first.images.get(kind="dermoscopic").sha256 == hashlib.sha256(dermoscopic).hexdigest()
    assert first.images.get(kind="clinical").sha256 == hashlib.sha256(clinical).hexdigest()

    # Running again keeps the study and the passwords.
    call_command("demo", "--no-serve", "--seed", "3", "--readers", "5")
    assert Study.objects.filter(slug="demo").count() == 1 and study.cases.count() == 200
    assert (tmp_path / "demo-credentials.json").read_text() == credentials


def test_demo_cases_interleave_classes_and_depend_on_the_seed():
    cases = demo_cases(seed=0)
    assert len(cases) == 200 and len({c.case_id for c in cases}) == 200
    assert [c.code for c in cases[:8]] != sorted(c.code for c in cases[:8])
    assert [c.code for c in demo_cases(seed=0)] == [c.code for c in cases]
    assert [c.code for c in demo_cases(seed=1)] != [c.code for c in cases]
