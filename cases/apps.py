from django.apps import AppConfig


class CasesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "cases"

    def ready(self) -> None:
        from cases import signals  # noqa: F401  (connects the study's default condition)
