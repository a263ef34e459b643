from django.urls import path

from cases import api

urlpatterns = [
    path("reader/studies/", api.ReaderStudies.as_view(), name="api-reader-studies"),
    path("reader/studies/<slug:slug>/next/", api.ReaderNext.as_view(), name="api-reader-next"),
    path(
        "reader/studies/<slug:slug>/progress/",
        api.ReaderProgress.as_view(),
        name="api-reader-progress",
    ),
    path(
        "reader/studies/<slug:slug>/consent/",
        api.ReaderConsent.as_view(),
        name="api-reader-consent",
    ),
    path(
        "reader/studies/<slug:slug>/answers/", api.ReaderAnswer.as_view(), name="api-reader-answer"
    ),
    path(
        "reader/studies/<slug:slug>/finish/", api.ReaderFinish.as_view(), name="api-reader-finish"
    ),
    path("admin/studies/", api.AdminStudies.as_view(), name="api-admin-studies"),
    path("admin/studies/<slug:slug>/", api.AdminStudy.as_view(), name="api-admin-study"),
    path("admin/studies/<slug:slug>/cases/", api.AdminCases.as_view(), name="api-admin-cases"),
    path(
        "admin/studies/<slug:slug>/enrolments/",
        api.AdminEnrolments.as_view(),
        name="api-admin-enrolments",
    ),
    path(
        "admin/studies/<slug:slug>/answers/", api.AdminAnswers.as_view(), name="api-admin-answers"
    ),
    path(
        "admin/studies/<slug:slug>/answers.csv",
        api.AdminAnswersCsv.as_view(),
        name="api-admin-answers-csv",
    ),
    path(
        "admin/studies/<slug:slug>/invitations/",
        api.AdminInvitations.as_view(),
        name="api-admin-invitations",
    ),
]
