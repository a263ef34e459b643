"""Report requests (cached by fingerprint), the Celery task, the admin Report page and the
staff-only file download view."""

from __future__ import annotations

from html import unescape

import pytest
from django.urls import reverse

from analysis import services
from analysis.models import AnalysisReport
from analysis.services import report_fingerprint, report_request
from analysis.tasks import report_compute_task
from tests.analysis.factories import build_db_study
from tests.factories import enrol

pytestmark = pytest.mark.django_db


@pytest.fixture
def study():
    return build_db_study(slug="adm", n_readers=2, per_class=3, embeddings=False)


def add_answer(study):
    from cases.models import Answer
    from tests.factories import CaseFactory, UserFactory

    user = UserFactory(username="late-reader")
    enrolment = enrol(study=study, user=user, seed=99)
    case = CaseFactory(study=study, diagnosis=study.cases.first().diagnosis, with_images=False)
    return Answer.objects.create(
        enrolment=enrolment, case=case, diagnosis=case.diagnosis, seconds=2
    )


# --- requests and caching -----------------------------------------------------------------


def test_request_enqueues_the_task_after_commit(
    study, enqueued_reports, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        report = report_request(study=study, seed=0, n_bootstrap=20)
    assert enqueued_reports == [report.pk]
    assert report.status == AnalysisReport.Status.QUEUED
    assert report.folder.startswith("reports/") and "adm" not in report.folder


def test_same_data_gives_the_same_report(
    study, enqueued_reports, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        first = report_request(study=study, seed=0, n_bootstrap=20)
        again = report_request(study=study, seed=0, n_bootstrap=20)
    assert again.pk == first.pk and enqueued_reports == [
        first.pk
    ]  # queued: not enqueued_reports twice
    assert report_compute_task(report_id=first.pk) == "done"
    cached = report_request(study=study, seed=0, n_bootstrap=20)
    assert cached.pk == first.pk and cached.status == AnalysisReport.Status.DONE


def test_new_answer_or_other_parameters_give_a_new_report(study, enqueued_reports):
    first = report_request(study=study, seed=0, n_bootstrap=20)
    assert report_request(study=study, seed=1, n_bootstrap=20).pk != first.pk
    assert report_request(study=study, seed=0, n_bootstrap=30).pk != first.pk
    add_answer(study)
    after = report_request(study=study, seed=0, n_bootstrap=20)
    assert after.pk != first.pk and after.fingerprint != first.fingerprint


def test_changed_answer_and_changed_model_flag_change_the_fingerprint(study):
    from django.utils import timezone

    from cases.models import Answer
    from inference.models import RegisteredModel

    before, _ = report_fingerprint(study=study, seed=0, n_bootstrap=20)
    answer = Answer.objects.filter(enrolment__study=study).first()
    Answer.objects.filter(pk=answer.pk).update(changed_at=timezone.now())
    changed, _ = report_fingerprint(study=study, seed=0, n_bootstrap=20)
    RegisteredModel.objects.update(trained=True)
    trained, _ = report_fingerprint(study=study, seed=0, n_bootstrap=20)
    assert len({before, changed, trained}) == 3


def test_new_prediction_changes_the_fingerprint(study):
    from cases.models import Diagnosis
    from inference.models import Prediction, RegisteredModel
    from tests.factories import CaseFactory

    before, _ = report_fingerprint(study=study, seed=0, n_bootstrap=20)
    mn = Diagnosis.objects.get(code="MN")
    case = CaseFactory(study=study, diagnosis=mn, with_images=False)
    fingerprint, _ = report_fingerprint(study=study, seed=0, n_bootstrap=20)
    assert fingerprint != before  # a new case (its reference diagnosis)
    Prediction.objects.create(
        model=RegisteredModel.objects.get(name="adm-cnn"),
        case=case,
        choice=mn,
        probabilities={"MN": 0.8, "SK": 0.1, "BCC": 0.1},
        choice_probabilities={"MN": 0.8, "SK": 0.1, "BCC": 0.1},
    )
    predicted, inputs = report_fingerprint(study=study, seed=0, n_bootstrap=20)
    assert predicted != fingerprint and inputs["predictions"] == 3 * 3 + 1
    # (A stored prediction never changes, its map included: inference 0004.)


def test_reader_profile_change_changes_the_fingerprint(study):
    from cases.models import ReaderProfile

    before, inputs = report_fingerprint(study=study, seed=0, n_bootstrap=20)
    assert inputs["readers"] == 2
    profile = ReaderProfile.objects.get(user__username="adm-reader0")
    profile.years_in_dermatology = 2
    profile.save()
    years, _ = report_fingerprint(study=study, seed=0, n_bootstrap=20)
    ReaderProfile.objects.filter(pk=profile.pk).update(region="Hunan")
    region, _ = report_fingerprint(study=study, seed=0, n_bootstrap=20)
    assert len({before, years, region}) == 3
    # The same data give the same fingerprint.
    assert report_fingerprint(study=study, seed=0, n_bootstrap=20)[0] == region


def test_adjust_and_subgroup_are_parameters_of_the_report(study, enqueued_reports):
    holm = report_request(study=study, seed=0, n_bootstrap=20)
    bonferroni = report_request(study=study, seed=0, n_bootstrap=20, adjust="bonferroni")
    bands = report_request(study=study, seed=0, n_bootstrap=20, subgroup="years:0,5")
    assert len({holm.fingerprint, bonferroni.fingerprint, bands.fingerprint}) == 3
    assert (bands.inputs["adjust"], bands.inputs["subgroup"]) == ("holm", "years:0,5")
    with pytest.raises(ValueError, match="adjust must be holm or bonferroni, got 'sidak'"):
        report_request(study=study, seed=0, n_bootstrap=20, adjust="sidak")


def test_which_readers_count_is_a_parameter_of_the_report(study, enqueued_reports):
    finished = report_request(study=study, seed=0, n_bootstrap=20)
    everyone = report_request(study=study, seed=0, n_bootstrap=20, readers="all")
    assert finished.fingerprint != everyone.fingerprint
    assert (finished.inputs["readers_rule"], everyone.inputs["readers_rule"]) == ("finished", "all")
    assert services.report_parameters(everyone)["readers"] == "all"
    assert report_request(study=study, seed=0, n_bootstrap=20, readers="all").pk == everyone.pk
    with pytest.raises(ValueError, match="readers must be finished or all, got 'some'"):
        report_request(study=study, seed=0, n_bootstrap=20, readers="some")


def test_a_reader_finishing_changes_the_fingerprint(study):
    from django.utils import timezone

    from cases.models import Enrolment

    before, _ = report_fingerprint(study=study, seed=0, n_bootstrap=20)
    enrolment = Enrolment.objects.filter(study=study).first()
    Enrolment.objects.filter(pk=enrolment.pk).update(finished_at=None)
    unfinished, _ = report_fingerprint(study=study, seed=0, n_bootstrap=20)
    Enrolment.objects.filter(pk=enrolment.pk).update(finished_at=timezone.now())
    again, _ = report_fingerprint(study=study, seed=0, n_bootstrap=20)
    assert len({before, unfinished, again}) == 3  # no answer changed, the readers did


def test_the_task_leaves_out_unfinished_readers_unless_asked(enqueued_reports, settings):
    import json

    study = build_db_study(slug="adm-partial", n_readers=3, per_class=3, unfinished=1)
    for readers, n_readers, n_left_out in (("finished", 2, 1), ("all", 3, 0)):
        report = report_request(study=study, seed=0, n_bootstrap=20, readers=readers)
        assert report_compute_task(report_id=report.pk) == "done"
        summary = json.loads((settings.MEDIA_ROOT / report.folder / "summary.json").read_text())
        assert (summary["n_readers"], summary["readers"]["n_left_out"]) == (n_readers, n_left_out)
        assert summary["readers"]["rule"] == readers
        assert not services.report_is_stale(report=report)


def test_task_computes_a_report_by_subgroup_with_bonferroni(study, enqueued_reports, settings):
    import json

    report = report_request(
        study=study, seed=0, n_bootstrap=20, adjust="bonferroni", subgroup="level"
    )
    assert report_compute_task(report_id=report.pk) == "done"
    report.refresh_from_db()
    assert (report.inputs["adjust"], report.inputs["subgroup"]) == ("bonferroni", "level")
    summary = json.loads((settings.MEDIA_ROOT / report.folder / "summary.json").read_text())
    assert (summary["adjust"], summary["subgroup"]) == ("bonferroni", "level")
    assert not services.report_is_stale(report=report)


def test_failed_report_is_not_reused_and_force_recomputes(study, enqueued_reports):
    failed = report_request(study=study, seed=0, n_bootstrap=20)
    AnalysisReport.objects.filter(pk=failed.pk).update(status="failed")
    retry = report_request(study=study, seed=0, n_bootstrap=20)
    assert retry.pk != failed.pk
    assert report_request(study=study, seed=0, n_bootstrap=20, force=True).pk != retry.pk


# --- the task -----------------------------------------------------------------------------


def test_task_computes_the_report_once(
    study, enqueued_reports, monkeypatch, settings, client, admin_user
):
    report = report_request(study=study, seed=2, n_bootstrap=20)
    assert report_compute_task(report_id=report.pk) == "done"
    report.refresh_from_db()
    assert report.status == "done" and report.finished_at and not report.error
    folder = settings.MEDIA_ROOT / report.folder
    assert {"report.html", "per_class.csv", "report.xlsx", "roc_adm-cnn.png"} <= set(report.files)
    assert all((folder / name).is_file() for name in report.files)

    def must_not_run(**kwargs):
        raise AssertionError("a done report was computed again")

    monkeypatch.setattr(services, "study_report_write", must_not_run)
    assert report_compute_task(report_id=report.pk) == "done"

    client.force_login(admin_user)
    response = client.get(reverse("analysis:report_file", args=[report.pk, "report.html"]))
    assert response.status_code == 200
    assert b"UNTRAINED" in b"".join(response.streaming_content)


def test_task_records_why_a_report_failed(enqueued_reports):
    from tests.factories import make_study

    empty = make_study(slug="empty")
    report = report_request(study=empty, seed=0, n_bootstrap=20)
    assert report_compute_task(report_id=report.pk) == "failed"
    report.refresh_from_db()
    assert "nothing to analyse" in report.error and report.files == []


# --- file downloads -----------------------------------------------------------------------


@pytest.fixture
def done_report(study, settings):
    """A done report with two files on disk (no computation: this is about the view)."""
    report = AnalysisReport.objects.create(
        study=study,
        fingerprint="0" * 64,
        seed=0,
        n_bootstrap=20,
        status="done",
        files=["per_class.csv", "report.html"],
    )
    folder = settings.MEDIA_ROOT / report.folder
    folder.mkdir(parents=True)
    (folder / "per_class.csv").write_text("rater,class\nR1,MN\n")
    (folder / "report.html").write_text("<html>report</html>")
    (folder / "forest.png").write_bytes(b"\x89PNG not listed")
    (settings.MEDIA_ROOT / "secret.csv").write_text("do not serve")
    return report


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user("staff", password="pw-staff-123", is_staff=True)


@pytest.mark.parametrize(
    ("persona", "expected"),
    [
        ("admin_user", 200),
        ("study_admin", 200),
        ("staff", 404),
        ("reader", 404),
        ("outsider", 404),
        (None, 404),
    ],
)
def test_only_the_studys_admins_download_report_files(
    request, client, done_report, study, persona, expected
):
    if persona is not None:
        user = request.getfixturevalue("staff" if persona == "study_admin" else persona)
        if persona == "reader":
            enrol(study=study, user=user, seed=5)
        if persona == "study_admin":
            from cases.services import study_admin_add

            study_admin_add(user=user, study=study)
        client.force_login(user)
    response = client.get(reverse("analysis:report_file", args=[done_report.pk, "per_class.csv"]))
    assert response.status_code == expected
    if expected == 200:
        assert b"".join(response.streaming_content) == b"rater,class\nR1,MN\n"
        assert response["Cache-Control"].startswith("private")
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Content-Type"].startswith("text/csv")
        assert "attachment" in response["Content-Disposition"]


@pytest.mark.parametrize(
    "name",
    ["forest.png", "notes.txt", "..%2Fsecret.csv", "..", "%2E%2E%2F..%2Fsecret.csv", "auc.csv"],
)
def test_unknown_names_are_404(client, admin_user, done_report, name):
    client.force_login(admin_user)
    url = reverse("analysis:report_file", args=[done_report.pk, "x"])[:-1] + name
    assert client.get(url).status_code == 404


def test_files_of_an_unfinished_or_missing_report_are_404(client, admin_user, done_report):
    client.force_login(admin_user)
    url = reverse("analysis:report_file", args=[done_report.pk, "report.html"])
    response = client.get(url)
    assert response.status_code == 200
    assert "sandbox" in response["Content-Security-Policy"]
    AnalysisReport.objects.filter(pk=done_report.pk).update(status="running")
    assert client.get(url).status_code == 404
    assert (
        client.get(reverse("analysis:report_file", args=[999999, "report.html"])).status_code == 404
    )


# --- the admin Report page ------------------------------------------------------------------


def test_admin_report_page_lists_the_files_and_computes(
    client, admin_user, done_report, study, enqueued_reports, django_capture_on_commit_callbacks
):
    client.force_login(admin_user)
    url = reverse("admin:analysis_study_report", args=[study.pk])
    page = client.get(url)
    assert page.status_code == 200
    for name in done_report.files:
        assert reverse("analysis:report_file", args=[done_report.pk, name]) in page.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, {"seed": 4, "n_bootstrap": 25})
    assert response.status_code == 302
    created = AnalysisReport.objects.get(study=study, seed=4)
    assert created.n_bootstrap == 25 and created.requested_by == admin_user
    assert enqueued_reports == [created.pk]
    changelist = client.get(reverse("admin:analysis_analysisreport_changelist"))
    assert changelist.status_code == 200 and url in changelist.content.decode()
    detail = client.get(reverse("admin:analysis_analysisreport_change", args=[done_report.pk]))
    link = reverse("analysis:report_file", args=[done_report.pk, "report.html"])
    assert detail.status_code == 200 and link in detail.content.decode()


def test_admin_report_page_says_when_the_report_is_out_of_date(
    client, admin_user, study, enqueued_reports
):
    report = report_request(study=study, seed=0, n_bootstrap=20)
    assert report_compute_task(report_id=report.pk) == "done"
    client.force_login(admin_user)
    url = reverse("admin:analysis_study_report", args=[study.pk])
    notice = "Out of date — the answers or predictions changed since this report; compute again."
    page = client.get(url).content.decode()
    assert "Up to date with the study's answers and predictions." in unescape(page)
    assert notice not in page
    add_answer(study)
    page = client.get(url).content.decode()
    assert notice in page and 'id="report-stale"' in page
    assert reverse("analysis:report_file", args=[report.pk, "report.html"]) in page


def test_admin_report_form_takes_adjust_and_subgroup_and_rejects_a_bad_one(
    client, admin_user, study, enqueued_reports
):
    client.force_login(admin_user)
    url = reverse("admin:analysis_study_report", args=[study.pk])
    data = {"seed": 0, "n_bootstrap": 20, "adjust": "bonferroni"}
    response = client.post(url, {**data, "subgroup": "years:0,5,10"})
    assert response.status_code == 302
    report = AnalysisReport.objects.get(study=study)
    assert (report.inputs["adjust"], report.inputs["subgroup"]) == ("bonferroni", "years:0,5,10")
    assert report.inputs["readers_rule"] == "finished"  # left out: the default
    for subgroup, message in (
        ("shoe_size", "subgroup column 'shoe_size' is not in the answers table"),
        ("years:10,5", "subgroup bands for 'years' must be strictly increasing numbers"),
    ):
        page = client.post(url, {**data, "subgroup": subgroup})
        assert page.status_code == 200
        assert message in unescape(page.content.decode()), subgroup
    assert AnalysisReport.objects.filter(study=study).count() == 1


def test_admin_report_form_offers_which_readers_count(client, admin_user, study, enqueued_reports):
    client.force_login(admin_user)
    url = reverse("admin:analysis_study_report", args=[study.pk])
    page = client.get(url).content.decode()
    assert 'name="readers"' in page and "Finished readers only (as in the reference study)" in page
    data = {"seed": 0, "n_bootstrap": 20}
    assert client.post(url, {**data, "readers": "all"}).status_code == 302
    report = AnalysisReport.objects.get(study=study)
    assert report.inputs["readers_rule"] == "all"
    assert report_compute_task(report_id=report.pk) == "done"
    page = client.get(url).content.decode()
    assert "all readers ·" in page and "<td>all</td>" in page  # latest and recent requests
    page = client.post(url, {**data, "readers": "some"})
    assert page.status_code == 200 and "Select a valid choice" in page.content.decode()
    assert AnalysisReport.objects.filter(study=study).count() == 1


def test_admin_report_page_is_not_for_readers(client, reader, study):
    client.force_login(reader)
    response = client.get(reverse("admin:analysis_study_report", args=[study.pk]))
    assert response.status_code == 302 and "/login/" in response["Location"]
    assert not AnalysisReport.objects.exists()
