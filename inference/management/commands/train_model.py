"""Train a CNN on an ImageFolder with the recipe of Zhu et al. 2021 (inference.training)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from inference.nets import list_archs
from inference.training import train


class Command(BaseCommand):
    help = (
        "Train ARCH on DATA_DIR (one sub-folder per class, named by diagnosis code, e.g. "
        "MN/, SK/) with gradual unfreezing and deep supervision, and write a checkpoint "
        "that `register_model NAME --weights FILE` accepts as it is."
    )

    def add_arguments(self, parser):
        parser.add_argument("data_dir")
        parser.add_argument("--arch", choices=list_archs(), required=True)
        parser.add_argument("--out", required=True, help="checkpoint file to write")
        parser.add_argument("--epochs-per-step", type=int, default=30)
        parser.add_argument("--steps", type=int, default=5)
        parser.add_argument("--batch-size", type=int, default=16)
        parser.add_argument("--img-size", type=int, help="input size (default: the arch's)")
        parser.add_argument(
            "--pretrained", action="store_true", help="ImageNet backbone (timm download)"
        )
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--lr", type=float, default=1e-3, help="base learning rate of the first step"
        )
        parser.add_argument("--workers", type=int, default=0, help="DataLoader processes")

    def handle(self, *args, **o):
        try:
            result = train(
                data_dir=o["data_dir"],
                arch=o["arch"],
                out=o["out"],
                epochs_per_step=o["epochs_per_step"],
                steps=o["steps"],
                batch_size=o["batch_size"],
                img_size=o["img_size"],
                pretrained=o["pretrained"],
                seed=o["seed"],
                lr_max=o["lr"],
                lr_min=min(o["lr"], 1e-5),
                num_workers=o["workers"],
                progress=o["verbosity"] > 0,
                log=lambda line: self.stdout.write(line),
            )
        except (ValueError, FileNotFoundError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            self.style.SUCCESS(
                f"Wrote {result.checkpoint} (sha256 {result.sha256[:16]}...): {result.arch}, "
                f"classes {','.join(result.classes)}, final loss {result.final_loss:.4f}, "
                f"accuracy {result.final_accuracy:.3f} on the training images."
            )
        )
