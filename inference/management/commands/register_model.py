"""Register a CNN (weights, arch, classes, preprocessing) so it can run on studies."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from audit.services import cli_actor_name
from inference.archs import list_archs
from inference.services import InferenceError, model_register


class Command(BaseCommand):
    help = (
        "Register a model. With --weights (our checkpoint format, a bare state_dict or a "
        "training-script dict) it is checked against the architecture before anything is "
        "stored; without weights it is an UNTRAINED model (random init, or ImageNet backbone "
        "with --pretrained). Arch, classes and input size come from our checkpoint format "
        "when it has them."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="unique slug, e.g. effb4-aux-2021")
        parser.add_argument("--arch", choices=list_archs(), help="architecture")
        parser.add_argument("--weights", help="checkpoint file (.pt)")
        parser.add_argument(
            "--classes", help="diagnosis codes in the order of the outputs, e.g. MN,SK,BCC"
        )
        parser.add_argument(
            "--pretrained",
            action="store_true",
            help="no weights: timm's ImageNet backbone with fresh heads (downloads once)",
        )
        parser.add_argument("--img-size", type=int, help="input size (default: the arch's)")
        parser.add_argument("--description", default="")

    def handle(self, *args, name, arch, weights, classes, pretrained, img_size, description, **o):
        try:
            model = model_register(
                name=name,
                arch=arch,
                classes=classes,
                weights=weights,
                pretrained=pretrained,
                description=description,
                img_size=img_size,
                actor_name=cli_actor_name(),
            )
        except InferenceError as exc:
            raise CommandError(str(exc)) from None
        flag = "" if model.trained else "  UNTRAINED"
        self.stdout.write(
            self.style.SUCCESS(
                f"Registered {model.name}: {model.arch}, {len(model.classes)} classes "
                f"({','.join(model.classes)}), input {model.preprocessing['input_size']} px, "
                f"weights {model.weights_source}"
                + (f" sha256 {model.weights_sha256[:16]}..." if model.weights_sha256 else "")
                + flag
            )
        )
