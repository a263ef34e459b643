"""Every study gets its first reading condition, "unaided", showing what its readers
have seen so far (the dermoscopic image, and the clinical photo where the study shows
it); every existing answer belongs to it. The PostgreSQL guard on answers (0007) lets
this through: it keeps the reader, case, time, seconds and diagnosis of an answer, and
this sets only the new column (0011 then adds the condition to what never changes)."""

from django.db import migrations

LABELS = {"label": "Unaided", "label_zh": "独立阅片"}


def forwards(apps, schema_editor):
    Study = apps.get_model("cases", "Study")
    ReadingCondition = apps.get_model("cases", "ReadingCondition")
    Answer = apps.get_model("cases", "Answer")
    for study in Study.objects.all().iterator():
        condition, _ = ReadingCondition.objects.get_or_create(
            study=study,
            code="unaided",
            defaults={
                "position": 1,
                "shows_dermoscopic": True,
                "shows_clinical": study.show_clinical_image,
                **LABELS,
            },
        )
        Answer.objects.filter(enrolment__study=study, condition__isnull=True).update(
            condition=condition
        )


class Migration(migrations.Migration):
    dependencies = [("cases", "0009_reading_conditions")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop, elidable=False)]
