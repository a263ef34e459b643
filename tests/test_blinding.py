"""Blinding: before a reader finishes, nothing they can fetch reveals a reference
diagnosis, case metadata, another reader's data or any model output.

Sentinel strings are planted in all of those places; every reader-facing page and
endpoint is walked at every step (and after bad input), and no response body or
header may contain a sentinel.
"""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from cases.models import Case, Diagnosis, Enrolment, Study
from cases.services import (
    answer_submit,
    enrolment_create,
    invitations_create,
    profile_save,
)
from inference.models import Prediction, RegisteredModel
from tests.factories import CaseFactory, make_study

pytestmark = pytest.mark.django_db

SENTINELS = [
    "SNTLTRUTH",
    "SENTINEL-TRUTH-EN",
    "SENTINEL-TRUTH-ZH",
    "SENTINEL-SOURCE",
    "SENTINEL-SITE",
    "SENTINEL-OTHER-USER",
    "RSENTINEL0",
    "sentinel-model",
    "SENTINEL-PROB",
    "SENTINEL-ERROR",
]


@pytest.fixture
def planted(django_user_model):
    study = make_study(
        slug="blind",
        choices=("MN", "SK", "BCC"),
        status=Study.Status.OPEN,
        consent_text="Consent.",
        consent_version="1",
        show_feedback=True,
        show_model_feedback=True,
    )
    truth = Diagnosis.objects.create(
        code="SNTLTRUTH", name_en="SENTINEL-TRUTH-EN", name_zh="SENTINEL-TRUTH-ZH"
    )
    cases = [
        CaseFactory(
            study=study,
            source_id=f"SENTINEL-SOURCE-{i}",
            position=i + 1,
            diagnosis=truth,
            site="SENTINEL-SITE",
            age=41,
        )
        for i in range(3)
    ]
    other = django_user_model.objects.create_user("SENTINEL-OTHER-USER")
    other_enrolment = enrolment_create(study=study, reader=other, seed=3, consent=True)
    Enrolment.objects.filter(pk=other_enrolment.pk).update(reader_code="RSENTINEL0")
    profile_save(user=other, level="chief", years_in_dermatology=30, region="SENTINEL-SITE")
    other_enrolment.refresh_from_db()
    answer_submit(
        enrolment=other_enrolment,
        diagnosis_code="BCC",
        case_public_id=Case.objects.get(pk=other_enrolment.case_order[0]).public_id,
    )
    model = RegisteredModel.objects.create(
        name="sentinel-model",
        arch="efficientnet_b4_aux",
        classes=["MN", "SK", "BCC"],
        preprocessing={},
        weights_source="random",
    )
    for case in cases:
        Prediction.objects.create(
            model=model,
            case=case,
            choice=truth,
            probabilities={"SENTINEL-PROB": 1.0},
            choice_probabilities={"SENTINEL-PROB": 1.0},
            error="SENTINEL-ERROR",
        )
    return study


def assert_blind(response, where: str) -> None:
    text = (
        response.content.decode("utf-8", errors="replace")
        if hasattr(response, "content")
        else b"".join(response.streaming_content).decode("latin-1")
    )
    headers = " ".join(f"{k}: {v}" for k, v in response.items())
    for sentinel in SENTINELS:
        assert sentinel not in text, f"{sentinel} leaked in the body of {where}"
        assert sentinel not in headers, f"{sentinel} leaked in the headers of {where}"


def walk(client, study, *, extra_posts=()) -> None:
    """Fetch every reader-facing page and endpoint, following redirects, plus the
    images the pages link to."""
    slug = study.slug
    urls = [
        "/",
        reverse("cases:study", args=[slug]),
        reverse("cases:consent", args=[slug]),
        reverse("cases:profile", args=[slug]),
        reverse("cases:case", args=[slug]),
        reverse("cases:case_revise", args=[slug, 1]),
        reverse("cases:done", args=[slug]),
        reverse("api-reader-studies"),
        reverse("api-reader-next", args=[slug]),
        reverse("api-reader-progress", args=[slug]),
        "/api/schema/",
        "/no-such-page/",
    ]
    for url in urls:
        response = client.get(url, follow=True)
        assert_blind(response, url)
        body = response.content.decode()
        for image in set(re.findall(r"/images/[0-9a-f]+/(?:web|thumb|original)", body)):
            assert_blind(client.get(image), image)
            assert_blind(client.get(image.rsplit("/", 1)[0] + "/original"), image)
    for url, data in extra_posts:
        assert_blind(client.post(url, data, content_type="application/json"), url)


def test_nothing_leaks_before_the_reader_finishes(client, planted):
    study = planted
    token = invitations_create(study=study, count=1)[0].token
    assert_blind(client.get(reverse("cases:join", args=[token])), "join")
    walk(client, study)  # anonymous
    response = client.post(
        reverse("cases:join", args=[token]),
        {
            "username": "blind-reader",
            "email": "b@example.org",
            "password1": "a-Long-pass-phrase-9",
            "password2": "a-Long-pass-phrase-9",
        },
        follow=True,
    )
    assert_blind(response, "registration")
    walk(client, study)  # before consent
    assert_blind(
        client.post(reverse("cases:consent", args=[study.slug]), {"agree": "on"}, follow=True),
        "consent",
    )
    walk(client, study)  # before the profile
    assert_blind(
        client.post(
            reverse("cases:profile", args=[study.slug]),
            {"level": "resident", "years_in_dermatology": "1"},
            follow=True,
        ),
        "profile",
    )
    answer_url = reverse("api-reader-answer", args=[study.slug])
    enrolment = Enrolment.objects.get(reader__username="blind-reader")
    for index in range(3):
        case = Case.objects.get(pk=enrolment.case_order[index]).public_id
        later = Case.objects.get(pk=enrolment.case_order[-1]).public_id
        bad = [
            (answer_url, {"case": case, "answer": "Pso"}),
            (answer_url, {"case": "f" * 16, "answer": "MN"}),
            (answer_url, "{broken json"),
        ]
        if index < 2:
            bad.append((answer_url, {"case": later, "answer": "MN"}))
        walk(client, study, extra_posts=bad)
        if index < 2:
            response = client.post(
                reverse("cases:case", args=[study.slug]),
                {"case": case, "answer": "SK"},
                follow=True,
            )
            assert_blind(response, f"answer {index + 1}")
            # the same case again (a second tab): refused, and still blind
            response = client.post(
                reverse("cases:case", args=[study.slug]), {"case": case, "answer": "BCC"}
            )
            assert_blind(response, "second tab")
    # The last answer finishes the study: feedback may now show the reference.
    response = client.post(
        answer_url, {"case": case, "answer": "MN"}, content_type="application/json"
    )
    assert response.status_code == 201 and response.json()["finished"]
    done = client.get(reverse("cases:done", args=[study.slug])).content.decode()
    assert "SENTINEL-TRUTH-EN" in done  # feedback, only now
    assert "sentinel-model" in done  # the study shows model feedback after finishing
    for sentinel in ("SENTINEL-OTHER-USER", "RSENTINEL0", "SENTINEL-SOURCE", "SENTINEL-SITE"):
        assert sentinel not in done


def test_no_feedback_at_all_when_the_study_disables_it(client, planted, reader):
    Study.objects.filter(pk=planted.pk).update(show_feedback=False, show_model_feedback=False)
    enrolment = enrolment_create(study=planted, reader=reader, seed=1, consent=True)
    profile_save(user=reader, level="resident", years_in_dermatology=1)
    enrolment.refresh_from_db()
    for pk in enrolment.case_order:
        answer_submit(
            enrolment=enrolment,
            diagnosis_code="MN",
            case_public_id=Case.objects.get(pk=pk).public_id,
        )
    client.force_login(reader)
    walk(client, planted)
