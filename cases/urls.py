from django.urls import path

from cases import views

app_name = "cases"

urlpatterns = [
    path("images/<str:public_id>/<str:variant>", views.case_image, name="image"),
    path("join/<str:token>/", views.join, name="join"),
    path("studies/<slug:slug>/", views.study_home, name="study"),
    path("studies/<slug:slug>/consent/", views.consent, name="consent"),
    path("studies/<slug:slug>/profile/", views.profile, name="profile"),
    path("studies/<slug:slug>/case/", views.case_page, name="case"),
    path("studies/<slug:slug>/case/<int:number>/", views.case_page, name="case_revise"),
    path("studies/<slug:slug>/done/", views.done, name="done"),
    path(
        "studies/<slug:slug>/support/<str:case_public_id>/<slug:condition_code>/gradcam",
        views.support_gradcam,
        name="support_gradcam",
    ),
]
