from django.apps import AppConfig


class InferenceConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "inference"

    def ready(self) -> None:
        from cases.feedback import register_model_feedback
        from cases.services import register_open_check
        from cases.support import register_support_source
        from inference.selectors import model_feedback_rows, support_predictions, support_refusals

        register_model_feedback(model_feedback_rows)
        register_open_check(support_refusals)
        register_support_source(support_predictions)
