"""The reader's done page and home page, the profile form, page titles, and the demo's
admin-only seed note; the Wilson interval the done page shows."""

# The en dashes of page titles and intervals are what several tests here check.
# ruff: noqa: RUF001

from __future__ import annotations

import importlib
import re

import pytest
from django.apps import apps
from django.urls import reverse

from cases.feedback import Proportion, wilson_interval
from cases.models import Case, Diagnosis, Enrolment, Study
from cases.services import answer_submit, case_serve, consent_give, invitations_create
from tests.factories import build_study, enrol, make_study, ready_enrolment

# --- the Wilson interval ------------------------------------------------------------------


@pytest.mark.parametrize(
    "successes, n", [(0, 1), (1, 1), (0, 20), (1, 29), (5, 10), (39, 200), (200, 200)]
)
@pytest.mark.parametrize("confidence", [0.95, 0.9])
def test_wilson_interval_matches_statsmodels(successes, n, confidence):
    from statsmodels.stats.proportion import proportion_confint

    expected = proportion_confint(successes, n, alpha=1 - confidence, method="wilson")
    assert wilson_interval(successes, n, confidence=confidence) == pytest.approx(
        expected, abs=1e-12
    )


@pytest.mark.parametrize(
    "successes, n, low, high",
    # Newcombe, Stat. Med. 1998, Table I, method 3 (the Wilson score interval).
    [
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_interval_reproduces_newcombes_published_values(successes, n, low, high):
    assert wilson_interval(successes, n) == pytest.approx((low, high), abs=5e-5)


@pytest.mark.parametrize("successes, n", [(0, 0), (3, 2), (-1, 5)])
def test_wilson_interval_refuses_an_impossible_proportion(successes, n):
    with pytest.raises(ValueError):
        wilson_interval(successes, n)


def test_a_proportion_reads_as_a_percentage_with_its_interval():
    assert Proportion(39, 200).text == "19.5% (95% CI 14.6–25.5%)"
    assert Proportion(39, 200).short_text == "19.5% (14.6–25.5%)"
    assert Proportion(0, 0).text == "–" and Proportion(0, 0).short_text == "–"


# --- the done page ------------------------------------------------------------------------


def _finish(study, reader, answer=lambda case: case.diagnosis.code):
    """Answer every case of ``study`` as ``reader`` (the reference, unless ``answer``)."""
    enrolment = ready_enrolment(study, reader, serve=False)
    for pk in enrolment.case_order:
        case = Case.objects.get(pk=pk)
        case_serve(enrolment=enrolment, case=case)
        answer_submit(
            enrolment=enrolment, case_public_id=case.public_id, diagnosis_code=answer(case)
        )
    return enrolment


def _page(client, name: str, study, **headers) -> str:
    return client.get(reverse(name, args=[study.slug]), **headers).content.decode()


@pytest.mark.django_db
def test_the_done_page_labels_its_table_and_gives_percentages_with_cis(client, reader):
    study = build_study(6, show_feedback=True)  # 2 cases each of MN, SK, BCC
    _finish(study, reader, answer=lambda case: "MN")  # right on MN only: 2 of 6
    client.force_login(reader)
    page = _page(client, "cases:done", study)
    table = re.search(r'<table class="data" data-testid="per-class"[^>]*>.*?</table>', page, re.S)[
        0
    ]
    headers = re.findall(r'<th scope="col">(.*?)</th>', table, re.S)
    assert headers == ["Diagnosis", "Cases", "Your correct answers", "Your sensitivity (95% CI)"]
    # described by the note above it (a caption would scroll away with a wide table)
    assert 'aria-describedby="per-class-note"' in table
    assert re.search(r'<p class="muted" id="per-class-note">Per diagnosis: ', page)
    rows = re.findall(r"<tr>\s*<th scope=\"row\">(.*?)</th>(.*?)</tr>", table, re.S)
    cells = {name: re.findall(r"<td>(.*?)</td>", rest) for name, rest in rows}
    assert cells["Melanocytic nevus"] == ["2", "2", "100.0% (34.2–100.0%)"]
    assert cells["Seborrheic keratosis"] == ["2", "0", "0.0% (0.0–65.8%)"]
    accuracy = re.search(r'data-testid="accuracy">(.*?)</p>', page)[1]
    assert accuracy == "Accuracy: 33.3% (95% CI 9.7–70.0%), 2 of 6 cases correct."
    # no bare fractions such as "0.333" or a lone "0" cell from the old tables
    assert not re.search(r"<td>0\.\d+</td>", page)


@pytest.mark.django_db
def test_the_done_page_shows_the_cnns_sensitivity_and_flags_it_untrained(client, reader):
    from inference.models import Prediction
    from inference.services import model_register

    study = build_study(3, show_feedback=True, show_model_feedback=True)
    _finish(study, reader)
    model = model_register(name="cnn-x", arch="efficientnet_b4_aux", classes="MN,SK,BCC")
    assert not model.trained
    mn = Diagnosis.objects.get(code="MN")
    for case in study.cases.all():
        Prediction.objects.create(model=model, case=case, choice=mn, probabilities={"MN": 1.0})
    client.force_login(reader)
    page = _page(client, "cases:done", study)
    table = re.search(r'data-testid="per-class"[^>]*>.*?</table>', page, re.S)[0]
    assert "CNN cnn-x: sensitivity (95% CI)" in table
    assert '<span class="badge">untrained</span>' in table
    mn_row = re.search(r'<th scope="row">Melanocytic nevus</th>(.*?)</tr>', table, re.S)[1]
    assert re.findall(r"<td>(.*?)</td>", mn_row) == [
        "1",
        "1",
        "100.0% (20.7–100.0%)",
        "100.0% (20.7–100.0%)",
    ]
    card = re.search(r'data-testid="model-feedback">(.*?)</div>', page, re.S)[1]
    assert 'class="badge" data-testid="untrained"' in card
    assert "Accuracy: 33.3% (95% CI 6.1–79.2%), 1 of 3 cases correct." in card


@pytest.mark.django_db
def test_a_closed_study_says_so_and_offers_nothing_to_continue(client, reader):
    study = build_study(3)
    enrolment = ready_enrolment(study, reader)
    first = Case.objects.get(pk=enrolment.case_order[0])
    answer_submit(enrolment=enrolment, case_public_id=first.public_id, diagnosis_code="MN")
    Study.objects.filter(pk=study.pk).update(status=Study.Status.CLOSED)
    client.force_login(reader)
    done = _page(client, "cases:done", study)
    assert 'data-testid="closed"' in done and "This study is closed." in done
    assert "You answered 1 of 3 cases." in done
    assert reverse("cases:case", args=[study.slug]) not in done
    assert "Continue" not in done and "<form" not in done.split("</header>")[1]

    home = client.get(reverse("home")).content.decode()
    card = re.search(rf'data-testid="study-{study.slug}">(.*?)</div>', home, re.S)[1]
    assert "This study is closed." in card and "1 of 3 cases answered." in card
    assert "Continue" not in card and "<a " not in card


@pytest.mark.django_db
def test_home_links_a_finished_reader_of_a_closed_study_to_their_results(client, reader):
    study = build_study(2, show_feedback=True)
    _finish(study, reader)
    Study.objects.filter(pk=study.pk).update(status=Study.Status.CLOSED)
    client.force_login(reader)
    home = client.get(reverse("home")).content.decode()
    card = re.search(rf'data-testid="study-{study.slug}">(.*?)</div>', home, re.S)[1]
    assert "This study is closed." in card
    assert f'href="{reverse("cases:done", args=[study.slug])}"' in card
    assert "See your results" in card and "Continue" not in card


@pytest.mark.django_db
@pytest.mark.parametrize(
    "answered, allow_changes, show_feedback, expected",
    [
        (0, False, False, "Start"),
        (1, False, False, "Continue"),
        (2, True, False, "Review your answers"),
        (2, False, True, "See your results"),
        (2, False, False, None),  # finished, nothing to see: no button
    ],
)
def test_home_offers_what_is_next_in_an_open_study(
    client, reader, answered, allow_changes, show_feedback, expected
):
    study = build_study(2, allow_answer_changes=allow_changes, show_feedback=show_feedback)
    enrolment = ready_enrolment(study, reader, serve=False)
    for pk in enrolment.case_order[:answered]:
        case = Case.objects.get(pk=pk)
        case_serve(enrolment=enrolment, case=case)
        answer_submit(enrolment=enrolment, case_public_id=case.public_id, diagnosis_code="MN")
    client.force_login(reader)
    home = client.get(reverse("home")).content.decode()
    card = re.search(rf'data-testid="study-{study.slug}">(.*?)</div>', home, re.S)[1]
    assert "closed" not in card
    buttons = re.findall(r'<a class="button"[^>]*>(.*?)</a>', card)
    assert buttons == ([expected] if expected else [])


# --- page titles --------------------------------------------------------------------------


@pytest.mark.django_db
def test_page_titles_name_the_page_the_study_and_the_site(client, reader):
    study = build_study(1, slug="nevi", show_feedback=True)
    token = invitations_create(study=study, count=1)[0].token
    client.force_login(reader)

    def title(url: str) -> str:
        return re.search(r"<title>(.*?)</title>", client.get(url).content.decode(), re.S)[1]

    assert title(reverse("home")) == "Reader study"  # no study yet
    assert title(reverse("cases:join", args=[token])) == ("Join this study – Nevi – Reader study")
    enrol(study=study, user=reader)
    assert title(reverse("cases:consent", args=[study.slug])) == ("Consent – Nevi – Reader study")
    assert title(reverse("home")) == "Your studies – Reader study"
    enrolment = _finish(study, reader)
    assert title(reverse("cases:profile", args=[study.slug])) == ("About you – Nevi – Reader study")
    assert title(reverse("cases:done", args=[study.slug])) == "Done – Nevi – Reader study"
    Study.objects.filter(pk=study.pk).update(status=Study.Status.CLOSED)
    Enrolment.objects.filter(pk=enrolment.pk).update(finished_at=None)
    assert title(reverse("cases:done", args=[study.slug])) == ("Closed – Nevi – Reader study")


@pytest.mark.django_db
def test_the_review_page_title_names_the_study(client, reader):
    study = build_study(1, slug="nevi", allow_answer_changes=True)
    _finish(study, reader)
    client.force_login(reader)
    page = _page(client, "cases:done", study)
    assert "<title>Review your answers – Nevi – Reader study</title>" in page


# --- the profile form ---------------------------------------------------------------------


@pytest.mark.django_db
def test_the_profile_form_marks_required_fields(client, reader):
    study = build_study(1, required_profile_fields=["level", "board_certified"])
    consent_give(enrolment=enrol(study=study, user=reader))
    client.force_login(reader)
    page = _page(client, "cases:profile", study)
    assert "Fields marked * are required." in page
    level = re.search(r'<label for="id_level">(.*?)</label>', page)[1]
    assert level == 'Professional level <span class="required" aria-hidden="true">*</span>'
    region = re.search(r'<label for="id_region">(.*?)</label>', page)[1]
    assert "*" not in region
    assert re.search(r'<select name="level"[^>]*aria-required="true"[^>]*required', page)
    # the yes/no/unknown select gets no HTML ``required`` (its first option is a value)
    assert re.search(r'<select name="board_certified"[^>]*aria-required="true"', page)
    region_input = re.search(r'<input[^>]*name="region"[^>]*>', page)[0]
    assert "aria-required" not in region_input and "required" not in region_input


@pytest.mark.django_db
def test_each_profile_error_sits_beside_its_field_and_is_linked_to_it(client, reader):
    study = build_study(1, required_profile_fields=["level", "years_in_dermatology"])
    consent_give(enrolment=enrol(study=study, user=reader))
    client.force_login(reader)
    response = client.post(
        reverse("cases:profile", args=[study.slug]), {"years_in_dermatology": "-1"}
    )
    page = response.content.decode()
    paragraphs = re.findall(r'<p class="field( invalid)?">(.*?)</p>', page, re.S)
    by_field = {re.search(r'for="id_(\w+)"', body)[1]: (bad, body) for bad, body in paragraphs}
    bad, body = by_field["level"]
    assert bad and 'id="id_level_error"' in body and "This field is required." in body
    assert re.search(r'<select[^>]*aria-describedby="id_level_error"', body)
    assert 'aria-invalid="true"' in body
    bad, body = by_field["years_in_dermatology"]
    assert bad and 'id="id_years_in_dermatology_error"' in body
    assert 'aria-describedby="id_years_in_dermatology_error"' in body
    bad, body = by_field["region"]
    assert not bad and "error" not in body


@pytest.mark.django_db
def test_a_profile_error_of_no_field_stands_at_the_top(client, reader):
    study = build_study(1, required_profile_fields=["level"])
    consent_give(enrolment=enrol(study=study, user=reader))
    Study.objects.filter(pk=study.pk).update(required_profile_fields=["level", "years"])
    client.force_login(reader)
    page = client.post(reverse("cases:profile", args=[study.slug]), {"level": "chief"})
    body = page.content.decode()
    top = body.index('data-testid="form-errors"')
    assert top < body.index('<form method="post" class="profile">')
    assert body.index("cannot be entered here (years)") > top


# --- the study's texts: readers see the description, admins also the notes ---------------


@pytest.mark.django_db
def test_readers_never_see_the_demos_seed_note_and_admins_do(client, admin_user, tmp_path):
    from demo.services import demo_build, demo_seed

    study = demo_build(seed=4, n_readers=0, per_class=1, data_dir=tmp_path).study
    assert "manage.py" not in study.description and "manage.py" not in study.description_zh
    assert demo_seed(study) == 4
    token = invitations_create(study=study, count=1)[0].token
    join = client.get(reverse("cases:join", args=[token])).content.decode()
    assert "synthetic study shaped like the reference reader study" in join
    assert "seed" not in join
    admin_user.refresh_from_db()  # the demo gave "admin" a new password
    client.force_login(admin_user)
    overview = client.get(reverse("admin:cases_study_overview", args=[study.pk])).content.decode()
    assert "Built from seed 4; manage.py demo --seed 4 builds the same study." in overview


@pytest.mark.django_db
def test_the_migration_moves_an_old_demos_seed_note_out_of_the_description():
    migration = importlib.import_module("cases.migrations.0006_study_admin_notes")
    study = build_study(
        1,
        is_synthetic=True,
        description="A synthetic study. Built from seed 7; manage.py demo --seed 7 builds the "
        "same study.",
    )
    real = make_study(slug="real", description="Built from seed 7;")
    migration.move_seed_notes(apps, None)
    study.refresh_from_db()
    real.refresh_from_db()
    assert study.description == "A synthetic study."
    assert study.admin_notes == "Built from seed 7; manage.py demo --seed 7 builds the same study."
    assert real.description == "Built from seed 7;" and real.admin_notes == ""
