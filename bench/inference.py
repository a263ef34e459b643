"""Throughput of the whole inference path against a bare forward pass.

Builds a throw-away study of ``--cases`` generated cases (demo.images, 600x600
dermoscopic JPEGs) in a temporary SQLite database and media folder, registers a randomly
initialised ``efficientnet_b4_aux`` (the weights do not change the speed) and times
``inference_run_execute``: reading each case's dermoscopic JPEG, decoding, Shades of
Gray, resizing, the forward pass, restricting to the choices and storing every
prediction (probabilities, embedding) in the database; with Grad-CAM also the map of
each top-1 (from the same forward pass: a gradient down to the last convolutional
stage only), its overlay PNG and storing that. Against it, a bare timm
``efficientnet_b4`` forward on tensors already in memory (same batch size,
channels-last, ``inference_mode``).

A shared 2-core machine drifts by +-20 % within minutes, so the runs are interleaved:
bare, path, bare, path with Grad-CAM, bare, path, bare, ... (``--rounds`` rounds of one
whole-path run without and one with Grad-CAM, each with a freshly registered model so
that every case is predicted again). Each whole-path run's ratio divides its speed by
the mean of the bare runs just before and after it; each figure is the median of the
rounds' ratios. ``--no-gradcam`` leaves the Grad-CAM runs out. The last two lines are
``gradcam ratio <median whole path with Grad-CAM / bare>`` (unless ``--no-gradcam``)
and ``ratio <median whole path without Grad-CAM / bare>``.

Run from the repository root: ``python bench/inference.py [--img-size 380
--batch-size 16 --cases 200 --rounds 3 --no-gradcam]``.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--img-size", type=int, default=380)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="whole-path runs (median)")
    parser.add_argument("--no-gradcam", action="store_true", help="skip the Grad-CAM runs")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    return parser.parse_args()


def setup_django(folder: Path) -> None:
    os.environ["READERSTUDY_DATA_DIR"] = str(folder)
    os.environ["DATABASE_URL"] = f"sqlite:///{folder / 'bench.sqlite3'}"
    os.environ["DJANGO_SETTINGS_MODULE"] = "readerstudy.settings"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def build_study(n_cases: int):
    """A study with ``n_cases`` generated cases (both images), classes interleaved."""
    import numpy as np
    from django.core.files.base import ContentFile

    from cases.models import Case, CaseImage, Diagnosis
    from cases.services import study_create
    from demo.images import DEMO_CHOICES, make_case_images

    study = study_create(slug="bench", title="Bench", choices=list(DEMO_CHOICES))
    diagnoses = {d.code: d for d in Diagnosis.objects.filter(code__in=DEMO_CHOICES)}
    for i in range(n_cases):
        code = DEMO_CHOICES[i % len(DEMO_CHOICES)]
        case = Case.objects.create(
            study=study, source_id=f"b{i}", position=i + 1, diagnosis=diagnoses[code]
        )
        images = make_case_images(code, rng=np.random.default_rng([7, i]))
        for kind, image in zip(("clinical", "dermoscopic"), images, strict=True):
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=90)
            data = buffer.getvalue()
            row = CaseImage(
                case=case,
                kind=kind,
                format="JPEG",
                sha256="0" * 64,
                width=image.width,
                height=image.height,
                size_bytes=len(data),
            )
            # the importer's web derivative of an image this small is the same size
            for field in ("original", "web", "thumbnail"):
                getattr(row, field).save("x.jpg", ContentFile(data), save=False)
            row.save()
    return study


def bare_forward(*, n: int, batch_size: int, img_size: int, classes: int) -> float:
    """Images per second of timm's efficientnet_b4 on in-memory tensors."""
    import timm
    import torch

    model = timm.create_model("efficientnet_b4", num_classes=classes).eval()
    model = model.to(memory_format=torch.channels_last)
    x = torch.randn(batch_size, 3, img_size, img_size).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        model(x[:2])  # warm-up
        done, start = 0, time.perf_counter()
        while done < n:
            k = min(batch_size, n - done)
            model(x[:k])
            done += k
    return n / (time.perf_counter() - start)


def whole_path(study, *, name: str, batch_size: int, img_size: int, gradcam: bool) -> float:
    """Images per second of a fresh run over the study (model loading included)."""
    from demo.images import DEMO_CHOICES
    from inference.services import inference_run_start, model_register
    from inference.services.execution import inference_run_execute

    model = model_register(
        name=name, arch="efficientnet_b4_aux", classes=list(DEMO_CHOICES), img_size=img_size
    )
    run = inference_run_start(model=model, study=study, enqueue=False)
    start = time.perf_counter()
    run = inference_run_execute(run_id=run.pk, batch_size=batch_size, with_gradcam=gradcam)
    seconds = time.perf_counter() - start
    if run.status != "done" or run.done != study.cases.count():
        raise SystemExit(f"the run did not finish: {run.status} {run.error}")
    return run.done / seconds


def main() -> None:
    args = parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="readerstudy-bench-") as tmp:
        setup_django(Path(tmp))
        from demo.images import DEMO_CHOICES

        start = time.perf_counter()
        study = build_study(args.cases)
        print(
            f"study: {args.cases} generated cases in {time.perf_counter() - start:.1f} s; "
            f"input {args.img_size} px, batch {args.batch_size}, "
            f"{torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs"
        )
        kwargs = dict(n=args.cases, batch_size=args.batch_size, img_size=args.img_size,
                      classes=len(DEMO_CHOICES))  # fmt: skip
        bare = [bare_forward(**kwargs)]
        print(f"bare forward (timm efficientnet_b4): {bare[0]:.2f} images/s")
        ratios: dict[bool, list[float]] = {False: [], True: []}
        kinds = (False,) if args.no_gradcam else (False, True)
        for k in range(args.rounds):
            for cam in kinds:
                path = whole_path(study, name=f"bench-{k}-{'cam' if cam else 'plain'}",
                                  batch_size=args.batch_size, img_size=args.img_size,
                                  gradcam=cam)  # fmt: skip
                bare.append(bare_forward(**kwargs))
                ratios[cam].append(path / ((bare[-2] + bare[-1]) / 2))
                print(
                    f"round {k + 1}: whole path {'with' if cam else 'without'} Grad-CAM "
                    f"{path:.2f} images/s, bare forward after it {bare[-1]:.2f} images/s, "
                    f"ratio {ratios[cam][-1]:.2f}"
                )
        print(f"median bare forward {statistics.median(bare):.2f} images/s; "
              f"round ratios {' '.join(f'{r:.2f}' for r in ratios[False])}")  # fmt: skip
        if not args.no_gradcam:
            print(f"Grad-CAM round ratios {' '.join(f'{r:.2f}' for r in ratios[True])}")
            print(f"gradcam ratio {statistics.median(ratios[True]):.2f}")
        print(f"ratio {statistics.median(ratios[False]):.2f}")


if __name__ == "__main__":
    main()
