from django.urls import path

from analysis import views

app_name = "analysis"

urlpatterns = [
    path("reports/<int:pk>/<str:name>", views.report_file, name="report_file"),
]
