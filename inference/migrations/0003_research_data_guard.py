"""The predictions of a finished run are research data.

- Prediction.run is PROTECT (it was SET_NULL): deleting a run would rewrite its
  predictions. No SQL: Django applies on_delete itself.
- On PostgreSQL, as cases 0007 does for answers and consents: a prediction whose run is
  done or failed is never updated or deleted (except inside the demo's erasure of a
  synthetic study, see cases 0007), and a done run stays done, with its model and study
  (a failed run may be resumed: it runs again and stores only what is missing).

SQLite relies on the model and queryset guards (see cases 0007 for why).
"""

import django.db.models.deletion
from django.db import migrations, models

CREATE = r"""
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
DROP TRIGGER IF EXISTS inference_prediction_guard ON inference_prediction;
CREATE TRIGGER inference_prediction_guard BEFORE UPDATE OR DELETE ON inference_prediction
    FOR EACH ROW EXECUTE FUNCTION inference_prediction_guard();

CREATE OR REPLACE FUNCTION inference_run_guard() RETURNS trigger AS $$
BEGIN
    IF (NEW.id, NEW.model_id, NEW.study_id) IS DISTINCT FROM (OLD.id, OLD.model_id, OLD.study_id)
        OR (OLD.status = 'done' AND NEW.status <> 'done')
    THEN
        RAISE EXCEPTION 'research data: a run keeps its model and study, and a done run stays done (run %)', OLD.id;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS inference_run_guard ON inference_inferencerun;
CREATE TRIGGER inference_run_guard BEFORE UPDATE ON inference_inferencerun
    FOR EACH ROW EXECUTE FUNCTION inference_run_guard();
"""
DROP = """
DROP TRIGGER IF EXISTS inference_run_guard ON inference_inferencerun;
DROP FUNCTION IF EXISTS inference_run_guard();
DROP TRIGGER IF EXISTS inference_prediction_guard ON inference_prediction;
DROP FUNCTION IF EXISTS inference_prediction_guard();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("inference", "0002_sent_at"),
        ("cases", "0007_research_data_guard"),  # research_data_erasing()
    ]
    operations = [
        migrations.AlterField(
            model_name="prediction",
            name="run",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="predictions",
                to="inference.inferencerun",
            ),
        ),
        migrations.RunPython(forwards, backwards),
    ]
