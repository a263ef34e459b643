from django.urls import path

from inference import views

app_name = "inference"

urlpatterns = [
    path("predictions/<int:pk>/gradcam.png", views.gradcam, name="gradcam"),
    path("studies/<slug:slug>/predictions.csv", views.predictions_csv, name="predictions_csv"),
]
