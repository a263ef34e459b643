"""Register the demo's CNNs on the demo study and run them (or queue them for a worker).

No pretrained weights are downloaded and no real model is shipped, so every demo model
is labelled for what it is: an UNTRAINED EfficientNet-b4 with auxiliary heads (random
initialisation, seeded), and with ``--train`` one trained for a minute or two from
random initialisation on a SEPARATE generated training set (other seeds than the demo
study's cases; never the study's own images). Neither says anything about the paper's
model; they exercise the pipeline end to end.
"""

from __future__ import annotations

import io
import tempfile
import time
from pathlib import Path

import numpy as np
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from cases.models import Study
from demo.images import DEMO_CHOICES, make_case_images
from demo.services import (
    DEMO_CNN,
    DEMO_CNN_ARCH,
    DEMO_CNN_DESCRIPTION,
    DEMO_CNN_IMG_SIZE,
    demo_model_ensure,
)
from inference.models import InferenceRun, RegisteredModel
from inference.services import InferenceError, inference_run_start, model_register

UNTRAINED = DEMO_CNN
TRAINED = "demo-effb4-aux-synthetic"
BASELINES = {
    "demo-effb4-untrained": "efficientnet_b4",
    "demo-resnet101-untrained": "resnet101",
    "demo-inception-v3-untrained": "inception_v3",
}
# Far from the demo study's seeds (demo.services uses [seed, 1, index]).
TRAINING_SEED = 7_000_001


def write_training_set(folder: Path, *, per_class: int, seed: int = TRAINING_SEED) -> int:
    """An ImageFolder of generated dermoscopic images, one sub-folder per demo class."""
    count = 0
    for c, code in enumerate(DEMO_CHOICES):
        (folder / code).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            _, dermoscopic = make_case_images(code, rng=np.random.default_rng([seed, c, i]))
            dermoscopic.save(folder / code / f"{i:03d}.jpg", quality=90)
            count += 1
    return count


class Command(BaseCommand):
    help = (
        "Register the demo models on a study (default: the demo study) and run them "
        "(--sync) or queue runs for the Celery worker. Untrained by default; --train adds "
        "one trained briefly on a separate generated training set."
    )

    def add_arguments(self, parser):
        parser.add_argument("--study", default="demo", help="study slug")
        parser.add_argument("--sync", action="store_true", help="run here instead of queueing")
        parser.add_argument(
            "--img-size", type=int, default=DEMO_CNN_IMG_SIZE, help="input size (paper: 380)"
        )
        parser.add_argument("--train", action="store_true", help="also train one briefly")
        parser.add_argument("--train-per-class", type=int, default=10)
        parser.add_argument("--train-epochs", type=int, default=15)
        parser.add_argument("--train-img-size", type=int, default=96)
        parser.add_argument("--train-lr", type=float, default=0.01)
        parser.add_argument("--baselines", action="store_true", help="untrained baselines too")
        parser.add_argument("--batch-size", type=int, default=16)
        parser.add_argument("--no-gradcam", action="store_true", help="with --sync")

    def handle(self, *args, **o):
        study = Study.objects.filter(slug=o["study"]).first()
        if study is None:
            raise CommandError(f"no study {o['study']!r}; build it first (manage.py demo)")
        models = [
            self._ensure(
                UNTRAINED,
                arch=DEMO_CNN_ARCH,
                img_size=o["img_size"],
                description=DEMO_CNN_DESCRIPTION,
            )
        ]
        if o["baselines"]:
            for name, arch in BASELINES.items():
                models.append(
                    self._ensure(name, arch=arch, img_size=o["img_size"],
                                 description=f"UNTRAINED demo baseline: {arch}, random init.")
                )  # fmt: skip
        if o["train"]:
            start = time.monotonic()
            models.append(self._trained(o))
            self.stdout.write(f"Training and registration: {time.monotonic() - start:.0f} s")
        for model in models:
            start = time.monotonic()
            self._run(model, study, o)
            if o["sync"]:
                self.stdout.write(f"{model}: {time.monotonic() - start:.0f} s")

    def _ensure(self, name: str, *, arch: str, img_size: int, description: str):
        model, created = demo_model_ensure(
            name=name, arch=arch, img_size=img_size, description=description
        )
        if created:
            self.stdout.write(f"Registered {name} ({arch}, {img_size} px, UNTRAINED).")
        return model

    def _trained(self, o) -> RegisteredModel:
        existing = RegisteredModel.objects.filter(name=TRAINED).first()
        if existing is not None:
            return existing
        with tempfile.TemporaryDirectory(prefix="readerstudy-demo-train-") as tmp:
            data = Path(tmp) / "train"
            n = write_training_set(data, per_class=o["train_per_class"])
            self.stdout.write(f"Generated a separate training set of {n} synthetic images.")
            out = Path(tmp) / "model.pt"
            log = io.StringIO()
            call_command(
                "train_model", str(data), arch="efficientnet_b4_aux", out=str(out),
                epochs_per_step=o["train_epochs"], steps=1, batch_size=16,
                img_size=o["train_img_size"], lr=o["train_lr"], seed=0, stdout=log,
                verbosity=0,
            )  # fmt: skip
            self.stdout.write(log.getvalue().strip())
            try:
                return model_register(
                    name=TRAINED,
                    arch=None,
                    classes=None,
                    weights=out,
                    description=(
                        f"Demo model trained for {o['train_epochs']} epochs from RANDOM "
                        f"initialisation on {n} generated images (a separate synthetic "
                        f"training set, not the demo study's cases), {o['train_img_size']} px. "
                        "Not the paper's model; it shows the training and registration path."
                    ),
                )
            except InferenceError as exc:
                raise CommandError(str(exc)) from None

    def _run(self, model: RegisteredModel, study: Study, o) -> None:
        if o["sync"]:
            args = ["run_inference", study.slug, model.name, "--sync"]
            args += ["--batch-size", str(o["batch_size"])]
            if o["no_gradcam"]:
                args.append("--no-gradcam")
            call_command(*args, stdout=self.stdout._out, stderr=self.stderr._out)
            return
        # Idempotent: every start of the demo comes here. A run in progress (queued, or
        # running, also one whose worker was stopped: the worker resumes it when it
        # starts) is left to go on, and a complete set of predictions needs no run.
        active = (
            InferenceRun.objects.filter(
                model=model,
                study=study,
                status__in=[InferenceRun.Status.QUEUED, InferenceRun.Status.RUNNING],
            )
            .order_by("-created_at", "-pk")
            .first()
        )
        if active is not None:
            self.stdout.write(
                f"Run {active.pk} of {model} on {study.slug} is {active.status} "
                f"({active.done + active.failed} of {active.total} cases); the worker goes on with it."
            )
            return
        missing = study.cases.exclude(predictions__model=model).count()
        if not missing:
            self.stdout.write(f"{model} has predicted every case of {study.slug}.")
            return
        try:
            run = inference_run_start(model=model, study=study, batch_size=o["batch_size"])
        except InferenceError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"Queued run {run.pk}: {model} on {study.slug} ({missing} cases to predict; "
            "the platform serves meanwhile)."
        )
