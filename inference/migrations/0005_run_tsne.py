"""The t-SNE points of a run's embeddings, stored beside the run (issue 13).

Runs done before this migration start with none: the first report of their study
computes and stores them (inference.services.projection). No data migration: the
points need scikit-learn and seconds per run.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("inference", "0004_predictions_final_once_stored"),
    ]

    operations = [
        migrations.AddField(
            model_name="inferencerun",
            name="tsne",
            field=models.JSONField(
                blank=True,
                default=list,
                editable=False,
                help_text="t-SNE points of the model's embeddings on the study, stored when "
                "the run is done (or by the first report after) so that reports reuse them: "
                "one entry per seed and set of predictions.",
            ),
        ),
    ]
