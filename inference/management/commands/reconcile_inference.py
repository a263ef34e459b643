"""Re-queue inference runs that a dead worker left behind."""

from __future__ import annotations

from datetime import timedelta

from django.core.management.base import BaseCommand

from inference.services import inference_runs_reconcile, stale_after


class Command(BaseCommand):
    help = (
        "List runs queued or running without a heartbeat for --older-than seconds and "
        "re-queue them (they resume where the predictions stop), and list (model, study) "
        "pairs with cases still lacking a prediction (--start-missing starts runs for them). "
        "Safe to run from cron: a re-queued run does no work twice."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="list only")
        parser.add_argument(
            "--older-than",
            type=float,
            default=None,
            help=f"seconds without a heartbeat (default {int(stale_after().total_seconds())})",
        )
        parser.add_argument("--start-missing", action="store_true")

    def handle(self, *args, dry_run, older_than, start_missing, **options):
        report = inference_runs_reconcile(
            dry_run=dry_run,
            start_missing=start_missing,
            older_than=None if older_than is None else timedelta(seconds=older_than),
        )
        verb = "stale" if dry_run else "re-queued"
        for run in report.stale_runs:
            self.stdout.write(
                f"run {run.pk} {run.model.name} on {run.study.slug}: {verb} "
                f"({run.done + run.failed} / {run.total} done)"
            )
        for model, study, n in report.missing:
            self.stdout.write(f"{model.name} on {study.slug}: {n} case(s) without a prediction")
        for run in report.started:
            self.stdout.write(f"started run {run.pk} {run.model.name} on {run.study.slug}")
        if not (report.stale_runs or report.missing):
            self.stdout.write("Nothing to reconcile.")
