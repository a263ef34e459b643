"""Every study has a reading condition from the moment it exists: a new study (from
``study_create``, the admin's form, an import) gets the default one, "unaided", which
shows what a one-condition study shows. A backup's restore brings its own conditions
(``raw``), so none is added there."""

from __future__ import annotations

from django.db.models.signals import post_save
from django.dispatch import receiver

from cases.models import ReadingCondition, Study


@receiver(post_save, sender=Study, dispatch_uid="cases.study_default_condition")
def study_default_condition(sender, instance: Study, created: bool, raw: bool, **kwargs) -> None:
    if created and not raw:
        ReadingCondition.default_for(instance)


@receiver(post_save, sender=Study, dispatch_uid="cases.study_condition_follows_clinical")
def study_condition_follows_clinical(sender, instance: Study, created: bool, raw: bool, **kwargs):
    """A draft of one condition: its condition shows the clinical photo as the study's
    "show clinical image" says (the reader's screen and the image permissions follow
    that field); opening refuses a study where they differ (study_design_refusals)."""
    if raw or created or instance.status != Study.Status.DRAFT:
        return
    if instance.design == Study.Design.SINGLE:
        ReadingCondition.objects.filter(study=instance).exclude(
            shows_clinical=instance.show_clinical_image
        ).update(shows_clinical=instance.show_clinical_image)
