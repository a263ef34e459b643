from django.urls import path

from cases import views

app_name = "cases"

urlpatterns = [
    path("images/<str:public_id>/<str:variant>", views.case_image, name="image"),
]
