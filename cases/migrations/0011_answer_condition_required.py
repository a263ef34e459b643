"""Every answer has its condition (0010 gave the existing ones theirs); one answer per
reader, case and condition. On PostgreSQL the guard on answers (0007) now also keeps an
answer's condition: like its reader, case, time and seconds, it never changes."""

import django.db.models.deletion
from django.db import migrations, models

GUARD = r"""
CREATE OR REPLACE FUNCTION cases_answer_guard() RETURNS trigger AS $$
DECLARE
    last_change cases_answerchange%ROWTYPE;
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF research_data_erasing(
            (SELECT e.study_id FROM cases_enrolment e WHERE e.id = OLD.enrolment_id)
        ) THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'research data: answers are never deleted (answer %)', OLD.id;
    END IF;
    IF (NEW.id, NEW.enrolment_id, NEW.case_id, NEW.condition_id, NEW.seconds, NEW.answered_at)
        IS DISTINCT FROM
       (OLD.id, OLD.enrolment_id, OLD.case_id, OLD.condition_id, OLD.seconds, OLD.answered_at)
    THEN
        RAISE EXCEPTION 'research data: the reader, case, condition, time and seconds of an answer never change (answer %)', OLD.id;
    END IF;
    IF (NEW.diagnosis_id, NEW.confidence, NEW.changed_at)
        IS DISTINCT FROM (OLD.diagnosis_id, OLD.confidence, OLD.changed_at)
    THEN
        SELECT * INTO last_change FROM cases_answerchange c
            WHERE c.answer_id = OLD.id ORDER BY c.id DESC LIMIT 1;
        IF NOT FOUND OR NEW.changed_at IS NULL
           OR (last_change.previous_diagnosis_id, last_change.previous_confidence,
               last_change.new_diagnosis_id, last_change.new_confidence)
               IS DISTINCT FROM (OLD.diagnosis_id, OLD.confidence,
                                 NEW.diagnosis_id, NEW.confidence)
        THEN
            RAISE EXCEPTION 'research data: an answer changes only with its history (answer %): answer_submit records the change in cases_answerchange first',
                OLD.id;
        END IF;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
"""


# Unapplied: 0007's guard again, without the condition (which 0009's reversal drops).
GUARD_0007 = (
    GUARD.replace("NEW.case_id, NEW.condition_id,", "NEW.case_id,")
    .replace("OLD.case_id, OLD.condition_id,", "OLD.case_id,")
    .replace("reader, case, condition, time", "reader, case, time")
)


def guard(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(GUARD, params=None)


def unguard(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(GUARD_0007, params=None)


class Migration(migrations.Migration):
    dependencies = [("cases", "0010_default_conditions")]
    operations = [
        migrations.AlterField(
            model_name="answer",
            name="condition",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="answers",
                to="cases.readingcondition",
            ),
        ),
        migrations.RemoveConstraint(model_name="answer", name="one_answer_per_case"),
        migrations.AddConstraint(
            model_name="answer",
            constraint=models.UniqueConstraint(
                fields=("enrolment", "case", "condition"), name="one_answer_per_case_condition"
            ),
        ),
        migrations.RunPython(guard, unguard, elidable=False),
    ]
