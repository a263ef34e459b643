"""Builders for the inference tests: random-init models at tiny input sizes, generated
images, a study to run them on and checkpoints. Django-side helpers import inside the
functions, so the model tests load this module without Django."""

import numpy as np
import torch
from PIL import Image, ImageDraw

from inference.nets import build_model

NUM_CLASSES = 5


# Small inputs that still leave a spatial map at the Grad-CAM layer: Inception-v3's
# unpadded stem needs ~139 px for a 3x3 map at Mixed_7c; the others are at 2x2 with 64.
TINY_SIZE = {"inception_v3": 139}


def tiny_size(arch: str) -> int:
    return TINY_SIZE.get(arch, 64)


def seeded_model(arch: str, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(arch, num_classes=NUM_CLASSES).eval()


def tiny_input(arch: str, batch: int = 2, seed: int = 1) -> torch.Tensor:
    size = tiny_size(arch)
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def shape_image(kind: str, size: int = 32, seed: int = 0) -> Image.Image:
    """A coloured shape on a textured background; ``kind`` is disc, square or stripes."""
    rng = np.random.default_rng(seed)
    background = rng.integers(90, 140, (size, size, 3), dtype=np.uint8)
    image = Image.fromarray(background)
    draw = ImageDraw.Draw(image)
    lo, hi = int(rng.integers(2, size // 4)), int(rng.integers(3 * size // 4, size - 2))
    if kind == "disc":
        draw.ellipse([lo, lo, hi, hi], fill=(200, 60, 60))
    elif kind == "square":
        draw.rectangle([lo, lo, hi, hi], fill=(40, 160, 40))
    elif kind == "stripes":
        for y in range(0, size, 6):
            draw.rectangle([0, y, size, y + 2], fill=(30, 30, 170))
    else:
        raise ValueError(kind)
    return image


STUDY_CHOICES = ("MN", "SK", "BCC")


MODEL_CLASSES = ["MN", "SK", "BCC", "SD", "Pso"]  # a superset of the study's choices


DIAGNOSES = ["MN", "SK", "BCC", "MN", "SK"]


def make_inference_study(*, slug: str = "inf", n: int = 5):
    """A study with ``n`` cases (choices MN, SK, BCC), each with two small JPEGs."""
    from cases.models import Diagnosis
    from tests.factories import CaseFactory, make_study

    study = make_study(slug=slug, choices=STUDY_CHOICES)
    for i in range(n):
        CaseFactory(
            study=study,
            source_id=f"{slug}-{i}",
            position=i + 1,
            diagnosis=Diagnosis.objects.get(code=DIAGNOSES[i % len(DIAGNOSES)]),
        )
    return study


def write_checkpoint(
    path,
    *,
    classes=MODEL_CLASSES,
    arch: str = "efficientnet_b4_aux",
    img_size: int = 64,
    seed: int = 0,
    favour: str | None = None,
    meta: dict | None = None,
):
    """Our checkpoint format for a seeded random model; ``favour`` gives that class a
    bias of +100 in the final classifier, so it is every image's unrestricted top-1."""
    from inference.checkpoints import save_checkpoint
    from inference.preprocessing import Preprocessing

    torch.manual_seed(seed)
    model = build_model(arch, num_classes=len(classes), img_size=img_size)
    if favour is not None:
        with torch.no_grad():
            model.backbone.get_classifier().bias[list(classes).index(favour)] = 100.0
    save_checkpoint(
        path,
        model=model,
        arch=arch,
        classes=list(classes),
        preprocessing=Preprocessing.for_arch(arch, img_size=img_size),
        meta={"trained": True, **(meta or {})},
    )
    return path
