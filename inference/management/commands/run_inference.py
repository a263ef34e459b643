"""Run a registered model over a study's cases, in this process or on a worker."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from audit.services import cli_actor_name
from cases.models import Study
from inference.models import InferenceRun, RegisteredModel
from inference.services import (
    DEFAULT_BATCH_SIZE,
    InferenceError,
    inference_run_start,
)


class Command(BaseCommand):
    help = (
        "Predict every case of STUDY_SLUG that has no prediction of MODEL_NAME yet (the "
        "dermoscopic image; top-1 restricted to the study's choices; embedding; Grad-CAM). "
        "Without --sync the run is queued for a Celery worker and its id printed."
    )

    def add_arguments(self, parser):
        parser.add_argument("study_slug")
        parser.add_argument("model_name")
        parser.add_argument("--sync", action="store_true", help="run here, with a progress bar")
        parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
        parser.add_argument(
            "--no-gradcam", action="store_true", help="skip the saliency maps (--sync only)"
        )

    def handle(self, *args, study_slug, model_name, sync, batch_size, no_gradcam, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        study = Study.objects.filter(slug=study_slug).first()
        if study is None:
            raise CommandError(f"no study {study_slug!r}")
        model = RegisteredModel.objects.filter(name=model_name).first()
        if model is None:
            raise CommandError(f"no registered model {model_name!r}")
        if not model.trained:
            self.stderr.write(f"Note: {model.name} is UNTRAINED ({model.weights_source} weights).")
        try:
            run = inference_run_start(
                model=model,
                study=study,
                batch_size=batch_size,
                enqueue=not sync,
                actor_name=cli_actor_name(),
            )
        except InferenceError as exc:
            raise CommandError(str(exc)) from None
        if not sync:
            run.refresh_from_db()
            if run.waits_for_broker:
                self.stderr.write(
                    f"Queued inference run {run.pk}, but the task broker is unreachable: the "
                    "run waits and is sent when the broker is back (Celery beat or a "
                    "worker's start send it)."
                )
                return
            self.stdout.write(f"Queued inference run {run.pk} ({run.status}); a worker runs it.")
            return
        if run.status == InferenceRun.Status.RUNNING:
            raise CommandError(f"run {run.pk} of this model on this study is already running")
        bar = tqdm(
            total=run.total,
            desc=f"{model.name} on {study.slug}",
            unit="case",
            bar_format="{desc}: {n_fmt} / {total_fmt} |{bar}| [{elapsed}<{remaining}]",
            file=self.stderr._out,  # the raw stream: OutputWrapper would add newlines
        )

        def progress(processed: int, total: int) -> None:
            bar.total = total
            bar.n = processed
            bar.refresh()

        try:
            from inference.services.execution import inference_run_execute

            run = inference_run_execute(
                run_id=run.pk,
                batch_size=batch_size,
                progress=progress,
                with_gradcam=not no_gradcam,
            )
        finally:
            bar.close()
        if run.status != InferenceRun.Status.DONE:
            raise CommandError(f"run {run.pk} failed: {run.error}")
        self.stdout.write(
            self.style.SUCCESS(
                f"Run {run.pk} done: {run.done + run.failed} / {run.total} cases "
                f"({run.failed} failed)."
            )
        )
