"""Where the console's pages hang in the Django admin. Each ModelAdmin whose part of the
admin a page belongs to adds these patterns in ``get_urls``, so the URLs and their names
(``admin:cases_study_overview``...) are the admin's, behind its login."""

from __future__ import annotations

import functools

from django.http import HttpResponseRedirect
from django.urls import path, reverse

from console import views
from console.access import Refused


def console_page(view):
    """``view`` behind the admin's login, with a :class:`~console.access.Refused` turned
    into the redirect to the admin index that the admin gives for a page it does not
    offer."""

    @functools.wraps(view)
    def page(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except Refused:
            return HttpResponseRedirect(reverse("admin:index"))

    return page


def _path(admin_site, route: str, view, name: str):
    return path(route, admin_site.admin_view(console_page(view)), name=name)


def study_urls(admin_site) -> list:
    """A study's pages, under admin/cases/study/."""
    return [
        _path(admin_site, "<int:pk>/overview/", views.study_overview_page, "cases_study_overview"),
        _path(admin_site, "<int:pk>/import/", views.cases_import_page, "cases_study_import"),
        _path(
            admin_site, "<int:pk>/lifecycle/", views.study_lifecycle_page, "cases_study_lifecycle"
        ),
        _path(admin_site, "<int:pk>/progress/", views.reader_progress_page, "cases_study_progress"),
        _path(admin_site, "<int:pk>/answers.csv", views.answers_csv, "cases_study_answers_csv"),
        _path(
            admin_site, "<int:pk>/invitations/", views.invitations_page, "cases_study_invitations"
        ),
        _path(
            admin_site,
            "<int:pk>/readers/<int:enrolment_pk>/account/",
            views.reader_account_page,
            "cases_study_reader_account",
        ),
    ]


def report_urls(admin_site) -> list:
    """A study's Report page, under admin/analysis/analysisreport/."""
    return [
        _path(
            admin_site, "study/<int:study_id>/", views.study_report_page, "analysis_study_report"
        ),
        _path(
            admin_site,
            "progress.json",
            views.reports_progress_json,
            "analysis_analysisreport_progress",
        ),
    ]


def run_urls(admin_site) -> list:
    """The "Run inference" page, under admin/inference/inferencerun/."""
    return [
        _path(admin_site, "start/", views.inference_run_start_page, "inference_inferencerun_start"),
        _path(
            admin_site,
            "progress.json",
            views.inference_runs_progress_json,
            "inference_inferencerun_progress",
        ),
    ]
