"""A stored prediction is final whatever its run's status.

0003 guarded the predictions of a done or failed run only, so resuming a failed run (it
goes back to queued, then running) made the predictions it had already stored editable
again. Now the PostgreSQL guard refuses every update and delete of a prediction, except
inside the demo's erasure of a synthetic study (cases 0007). The run guard is unchanged.
"""

from django.db import migrations

CREATE = r"""
CREATE OR REPLACE FUNCTION inference_prediction_guard() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' AND research_data_erasing(
        (SELECT c.study_id FROM cases_case c WHERE c.id = OLD.case_id)
    ) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'research data: the predictions of an inference run are never changed or deleted once stored (% of prediction % refused)', TG_OP, OLD.id;
END;
$$ LANGUAGE plpgsql;
"""
# 0003's function, put back when this migration is unapplied.
RESTORE = r"""
CREATE OR REPLACE FUNCTION inference_prediction_guard() RETURNS trigger AS $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM inference_inferencerun r
            WHERE r.id = OLD.run_id AND r.status IN ('done', 'failed')
    ) THEN
        IF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
        RETURN NEW;
    END IF;
    IF TG_OP = 'DELETE' AND research_data_erasing(
        (SELECT c.study_id FROM cases_case c WHERE c.id = OLD.case_id)
    ) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'research data: the predictions of a finished inference run are never changed or deleted (% of prediction % refused)', TG_OP, OLD.id;
END;
$$ LANGUAGE plpgsql;
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(RESTORE, params=None)


class Migration(migrations.Migration):
    dependencies = [("inference", "0003_research_data_guard")]
    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
