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

from cases.models import Answer, Case, Diagnosis, Enrolment, Study
from cases.services import (
    answer_submit,
    case_serve,
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
    "SENTINEL-UPLOAD",
    "SENTINEL-EXIF",
    "SENTINEL-COMMENT",
]


@pytest.fixture(params=[False, True], ids=["final-answers", "changes-allowed"])
def planted(request, django_user_model):
    study = make_study(
        allow_answer_changes=request.param,
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
    other_first = Case.objects.get(pk=other_enrolment.case_order[0])
    case_serve(enrolment=other_enrolment, case=other_first)
    answer_submit(
        enrolment=other_enrolment, diagnosis_code="BCC", case_public_id=other_first.public_id
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
    # a case of another study: outside this reader's enrolment
    CaseFactory(study=make_study(slug="elsewhere", status=Study.Status.OPEN), source_id="out-1")
    return study


def assert_blind(response, where: str, *, allowed=frozenset()) -> None:
    """No sentinel (except those in ``allowed``) in the body or headers of ``response``."""
    text = (
        response.content.decode("utf-8", errors="replace")
        if hasattr(response, "content")
        else b"".join(response.streaming_content).decode("latin-1")
    )
    headers = " ".join(f"{k}: {v}" for k, v in response.items())
    for sentinel in SENTINELS:
        if sentinel in allowed:
            continue
        assert sentinel not in text, f"{sentinel} leaked in the body of {where}"
        assert sentinel not in headers, f"{sentinel} leaked in the headers of {where}"


def walk(client, study, *, extra_posts=(), allowed_on_done=frozenset()) -> dict[str, int]:
    """Fetch every reader-facing page and endpoint, following redirects, plus the
    images the pages link to; return each URL's final status. Only the done page may
    show the sentinels in ``allowed_on_done`` (feedback after finishing)."""
    slug = study.slug
    done = reverse("cases:done", args=[slug])
    urls = [
        "/",
        "/health/",
        reverse("login"),
        reverse("password_change"),
        reverse("password_change_done"),
        reverse("cases:study", args=[slug]),
        reverse("cases:consent", args=[slug]),
        reverse("cases:profile", args=[slug]),
        reverse("cases:case", args=[slug]),
        reverse("cases:case_revise", args=[slug, 1]),
        reverse("cases:case_revise", args=[slug, 2]),
        done,
        reverse("api-reader-studies"),
        reverse("api-reader-next", args=[slug]),
        reverse("api-reader-next", args=[slug]) + "?prefetch=1",
        reverse("api-reader-progress", args=[slug]),
        reverse("api-schema"),
        reverse("api-docs"),
        "/no-such-page/",
    ]
    statuses = {}
    for url in urls:
        response = client.get(url, follow=True)
        statuses[url] = response.status_code
        final = response.request["PATH_INFO"]
        assert_blind(response, url, allowed=allowed_on_done if final == done else frozenset())
        body = response.content.decode()
        for image in set(re.findall(r"/images/[0-9a-f]+/(?:web|thumb|original)", body)):
            assert_blind(client.get(image), image)
            assert_blind(client.get(image.rsplit("/", 1)[0] + "/original"), image)
    posts = [(reverse("api-reader-consent", args=[slug]), {}), *extra_posts]
    for url, data in posts:
        assert_blind(client.post(url, data, content_type="application/json"), url)
    return statuses


def html_bad_answers(client, study, *, case: str, later: str | None) -> None:
    """Bad answers through the HTML form: each a 4xx page, and blind."""
    outside = Case.objects.exclude(study=study).first().public_id
    bad = [
        {"case": case, "answer": "Pso"},  # not one of the study's choices
        {"case": outside, "answer": "MN"},  # outside the enrolment
        {"case": "f" * 16, "answer": "MN"},  # no such case
        {"case": case, "answer": "MN", "reader": "1"},  # a forged reader
    ]
    if later is not None:
        bad.append({"case": later, "answer": "MN"})  # not the next one
    for data in bad:
        response = client.post(reverse("cases:case", args=[study.slug]), data)
        assert 400 <= response.status_code < 500, (data, response.status_code)
        assert_blind(response, f"HTML answer {data}")


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_nothing_leaks_before_the_reader_finishes(client, planted, language):
    study = planted
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = language
    truth_name = {"en": "SENTINEL-TRUTH-EN", "zh-hans": "SENTINEL-TRUTH-ZH"}[language]
    token = invitations_create(study=study, count=1)[0].token
    join = client.get(reverse("cases:join", args=[token]))
    assert f'lang="{language}"' in join.content.decode()  # the walk is in that language
    assert_blind(join, "join")
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
    assert_blind(client.get(reverse("cases:join", args=[token]), follow=True), "join again")
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
    revise_url = reverse("cases:case_revise", args=[study.slug, 1])
    for index in range(3):
        case = Case.objects.get(pk=enrolment.case_order[index]).public_id
        later = Case.objects.get(pk=enrolment.case_order[-1]).public_id if index < 2 else None
        bad = [
            (answer_url, {"case": case, "answer": "Pso"}),
            (answer_url, {"case": "f" * 16, "answer": "MN"}),
            (answer_url, "{broken json"),
            (answer_url, {"case": case, "answer": "MN", "enrolment": 1}),  # forged
        ]
        if later:
            bad.append((answer_url, {"case": later, "answer": "MN"}))
        statuses = walk(client, study, extra_posts=bad)  # serves this case
        # The revise page is walked in its real state: open once a case is answered,
        # where the study allows changes.
        revisable = study.allow_answer_changes and index > 0
        assert (statuses[revise_url] == 200) == revisable, statuses[revise_url]
        html_bad_answers(client, study, case=case, later=later)
        if index == 0:
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
        elif index == 1:
            # as the case page's script answers: the reply carries the next case and the
            # images of the one after it
            response = client.post(
                answer_url,
                {"case": case, "answer": "SK", "next": True, "revise": False},
                content_type="application/json",
            )
            assert response.status_code == 201 and response.json()["next"]["case"]
            assert_blind(response, "answer with the next screen")
            for image in re.findall(r"/images/[0-9a-f]+/web", response.content.decode()):
                assert_blind(client.get(image), image)
            # a stale tab's other answer to it: refused (409), and still blind
            response = client.post(
                answer_url,
                {"case": case, "answer": "BCC", "next": True, "revise": False},
                content_type="application/json",
            )
            assert response.status_code == 409
            assert response.json()["code"] == "answered_elsewhere"
            assert_blind(response, "stale tab through the API")
    response = client.post(
        answer_url, {"case": case, "answer": "MN"}, content_type="application/json"
    )
    assert response.status_code == 201
    assert_blind(response, "the last answer")
    if study.allow_answer_changes:
        # Every case answered, changes allowed: the reader may still revise, so nothing
        # is shown until they confirm that they have finished.
        assert not response.json()["finished"]
        walk(client, study)
        response = client.post(reverse("cases:done", args=[study.slug]), follow=True)
        assert response.status_code == 200
    else:
        assert response.json()["finished"]
    # Finished, with feedback on: the done page may now show the reference's names (in
    # the reader's language) and the CNN's name; nothing else, anywhere, ever shows a
    # sentinel, and other readers' data never.
    done = client.get(reverse("cases:done", args=[study.slug])).content.decode()
    assert truth_name in done  # feedback, only now
    assert "sentinel-model" in done  # the study shows model feedback after finishing
    walk(client, study, allowed_on_done={truth_name, "sentinel-model"})


def test_no_feedback_at_all_when_the_study_disables_it(client, planted, reader):
    Study.objects.filter(pk=planted.pk).update(show_feedback=False, show_model_feedback=False)
    enrolment = enrolment_create(study=planted, reader=reader, seed=1, consent=True)
    profile_save(user=reader, level="resident", years_in_dermatology=1)
    client.force_login(reader)
    enrolment.refresh_from_db()
    for pk in enrolment.case_order:
        case = Case.objects.get(pk=pk)
        case_serve(enrolment=enrolment, case=case)
        answer_submit(enrolment=enrolment, diagnosis_code="MN", case_public_id=case.public_id)
    if planted.allow_answer_changes:
        client.post(reverse("cases:done", args=[planted.slug]))
    assert Enrolment.objects.get(pk=enrolment.pk).finished_at is not None
    walk(client, planted)


def _jpeg_with_metadata(text: str, *, where: str, seed: int) -> bytes:
    """A JPEG carrying ``text`` in its EXIF ImageDescription or its comment (COM) segment."""
    import io

    from PIL import Image

    from tests.factories import image_bytes

    image = Image.open(io.BytesIO(image_bytes(seed=seed, size=(96, 72))))
    out = io.BytesIO()
    if where == "exif":
        exif = Image.Exif()
        exif[0x010E] = text  # ImageDescription
        image.save(out, format="JPEG", exif=exif)
    else:
        image.save(out, format="JPEG", comment=text.encode())
    return out.getvalue()


@pytest.mark.parametrize(
    "where, sentinel", [("exif", "SENTINEL-EXIF"), ("comment", "SENTINEL-COMMENT")]
)
def test_upload_names_and_metadata_never_reach_a_reader(
    client, tmp_path, reader, admin_user, where, sentinel
):
    """A case imported through the real importer, from files whose names and metadata
    (EXIF ImageDescription, or a JPEG comment) carry sentinels: a reader's images (and
    their headers) show neither; the original, for staff, still has the metadata (so the
    plant is real)."""
    from cases.importing import cases_import
    from tests.factories import write_bundle

    names = {
        "clinical_image": "img/SENTINEL-UPLOAD-clin.jpg",
        "dermoscopic_image": "img/SENTINEL-UPLOAD-derm.jpg",
    }
    write_bundle(
        tmp_path / "bundle",
        [{"case_id": "c001", "diagnosis": "MN", "site": "back", **names}],
        images={
            name: _jpeg_with_metadata(sentinel, where=where, seed=i)
            for i, name in enumerate(names.values())
        },
    )
    cases_import(
        slug="imported", source=tmp_path / "bundle", title="Imported", choices=["MN", "SK", "BCC"]
    )
    study = Study.objects.get(slug="imported")
    Study.objects.filter(pk=study.pk).update(status=Study.Status.OPEN)
    study.refresh_from_db()
    enrolment_create(study=study, reader=reader, seed=1, consent=True)
    profile_save(user=reader, level="resident", years_in_dermatology=1)
    for image in study.cases.get().images.all():
        for field in ("original", "web", "thumbnail"):
            assert "SENTINEL" not in getattr(image, field).name  # stored under a random name
    client.force_login(reader)
    body = client.get(reverse("cases:case", args=[study.slug])).content.decode()
    images = set(re.findall(r"/images/[0-9a-f]+/web", body))
    assert len(images) == 2
    for url in images:
        for variant in ("web", "thumb"):
            response = client.get(url.rsplit("/", 1)[0] + "/" + variant)
            assert response.status_code == 200
            assert_blind(response, url)
        assert client.get(url.rsplit("/", 1)[0] + "/original").status_code == 404
    walk(client, study)
    client.force_login(admin_user)
    original = client.get(next(iter(images)).rsplit("/", 1)[0] + "/original")
    assert sentinel.encode() in b"".join(original.streaming_content)


# --- reading with the CNN (#14) ----------------------------------------------------------


@pytest.fixture(params=[Study.Design.SEQUENTIAL, Study.Design.CROSSOVER])
def supported(request, reader):
    """A study of the design ``request.param`` with an unaided and an aided condition
    (the CNN's top-3 and Grad-CAM, from ``sentinel-model``), cases whose reference and
    site are sentinels, predictions whose raw probabilities and error are sentinels; and
    ``reader`` enrolled, consented, profiled, at their first read."""
    from django.core.files.base import ContentFile

    from cases.models import ReadingCondition
    from cases.services import consent_give, study_open
    from inference.models import ConditionSupport

    study = make_study(
        slug="blind-cnn",
        choices=("MN", "SK", "BCC"),
        consent_text="Consent.",
        consent_version="1",
        design=request.param,
        washout_days=3 if request.param == Study.Design.CROSSOVER else None,
        show_feedback=True,
    )
    truth = Diagnosis.objects.create(
        code="SNTLTRUTH", name_en="SENTINEL-TRUTH-EN", name_zh="SENTINEL-TRUTH-ZH"
    )
    aided = ReadingCondition.objects.create(
        study=study, code="aided", position=2, shows_cnn=True, shows_gradcam=True
    )
    model = RegisteredModel.objects.create(
        name="sentinel-model", arch="efficientnet_b4_aux", classes=["MN", "SK", "BCC"],
        preprocessing={}, weights_source="random",
    )  # fmt: skip
    ConditionSupport.objects.create(condition=aided, model=model, top_k=3)
    for i in range(2):
        case = CaseFactory(
            study=study, source_id=f"SENTINEL-SOURCE-{i}", position=i + 1, diagnosis=truth,
            site="SENTINEL-SITE", age=41,
        )  # fmt: skip
        prediction = Prediction(
            model=model, case=case, choice=Diagnosis.objects.get(code="SK"),
            probabilities={"SENTINEL-PROB": 1.0},
            choice_probabilities={"MN": 0.25, "SK": 0.6, "BCC": 0.15},
            error="SENTINEL-ERROR",
        )  # fmt: skip
        prediction.gradcam.save("cam.png", ContentFile(b"\x89PNG cam"), save=False)
        prediction.save()
    study_open(study=study, actor=None)
    enrolment = enrolment_create(study=study, reader=reader, seed=2)
    consent_give(enrolment=enrolment)
    profile_save(user=reader, level="resident", years_in_dermatology=1)
    return Study.objects.get(pk=study.pk)


def _support_urls(study) -> list[str]:
    return [
        reverse("cases:support_gradcam", args=[study.slug, case.public_id, code])
        for case in study.cases.all()
        for code in ("unaided", "aided")
    ]


def _walk_reads(client, study, *, shown: str | None) -> None:
    """The walk at one read, plus every Grad-CAM address of the study: the support (its
    panel, its API fields, its overlay) is there only for ``shown``, the public id of
    the case whose current read shows it (None: for none)."""
    walk(client, study)
    screen = client.get(reverse("api-reader-next", args=[study.slug])).json()
    case = screen["case"]
    assert (case is not None and case["support"] is not None) == (shown is not None), screen
    for url in _support_urls(study):
        response = client.get(url)
        expected = 200 if shown is not None and f"/{shown}/aided/" in url else 404
        assert response.status_code == expected, url
        assert_blind(response, url)
    page = client.get(reverse("cases:case", args=[study.slug]), follow=True).content.decode()
    assert ("/gradcam" in page) == (shown is not None)
    assert ("60%" in page) == (shown is not None)  # the CNN's top probability, shown as such


def test_the_cnn_support_reaches_a_reader_only_where_and_when_its_condition_shows_it(
    client, supported, reader, monkeypatch
):
    """Sequential: on each case's second read only, after its unaided answer is stored.
    Crossover: in the reader's aided session only. Never the reference, the site, the
    model's name, its raw probabilities or its error, and nothing between sessions."""
    import datetime as dt

    from django.utils import timezone

    study = supported
    client.force_login(reader)
    enrolment = Enrolment.objects.get(study=study, reader=reader)
    answer_url = reverse("api-reader-answer", args=[study.slug])
    real_now = timezone.now
    while True:
        screen = client.get(reverse("api-reader-next", args=[study.slug])).json()
        if screen["step"] == "washout":
            walk(client, study)
            for url in _support_urls(study):
                assert client.get(url).status_code == 404
            monkeypatch.setattr(timezone, "now", lambda: real_now() + dt.timedelta(days=4))
            continue
        if screen["case"] is None:
            break
        case = screen["case"]
        aided = case["condition"]["code"] == "aided"
        _walk_reads(client, study, shown=case["id"] if aided else None)
        response = client.post(
            answer_url,
            {"case": case["id"], "answer": "MN", "condition": case["condition"]["code"]},
            content_type="application/json",
        )
        assert response.status_code == 201, response.content
        assert_blind(response, "an answer")
    enrolment.refresh_from_db()
    assert enrolment.finished_at is not None
    assert Answer.objects.filter(enrolment=enrolment).count() == 4
    for url in _support_urls(study):  # after finishing too
        assert client.get(url).status_code == 404
    walk(client, study, allowed_on_done={"SENTINEL-TRUTH-EN"})
