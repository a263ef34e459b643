"""The registered CNN architectures as plain data: names, input sizes, normalisation.

timm keeps its model configs (input size, mean/std, interpolation) as data beside the
builders, so code that only lists or describes models never imports torch. So do we:
the web tier (the admin's forms, registration of a randomly initialised model) reads
this module, and only :mod:`inference.nets` (imported where a model is built) holds the
torch builders, one per name listed here. The normalisation values are those of timm's
default pretrained config for each ``timm_name`` (a test compares them).
"""

from __future__ import annotations

from dataclasses import dataclass

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class ArchSpec:
    """What a registered architecture needs around it.

    ``cam_layer`` and the entries of ``stages`` are dotted submodule names of the built
    network (:class:`inference.nets.Net`). ``stages`` lists parameter groups from the
    input to the output (the last one is the classifier head); gradual unfreezing
    releases them back to front.
    """

    name: str
    timm_name: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str
    colour_constancy: bool
    cam_layer: str
    stages: tuple[tuple[str, ...], ...]
    embedding_dim: int
    description: str = ""


_EFFICIENTNET_STAGES = (
    ("backbone.conv_stem", "backbone.bn1"),
    *((f"backbone.blocks.{i}",) for i in range(7)),
    ("backbone.conv_head", "backbone.bn2", "backbone.classifier"),
)

# EfficientNet-b4's native resolution (Tan & Le 2019) and the paper's input size; timm's
# ra2 weights were trained at 320 and tested at 384.
_B4_SIZE = 380

ARCHS: dict[str, ArchSpec] = {
    spec.name: spec
    for spec in (
        ArchSpec(
            name="efficientnet_b4_aux",
            timm_name="efficientnet_b4",
            input_size=_B4_SIZE,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            interpolation="bicubic",
            colour_constancy=True,
            cam_layer="backbone.bn2",
            stages=(
                *_EFFICIENTNET_STAGES[:-1],
                (*_EFFICIENTNET_STAGES[-1], "aux_heads"),
            ),
            embedding_dim=1792,
            description="EfficientNet-b4 + 7 auxiliary classifiers, logits summed (Zhu et al. 2021)",
        ),
        ArchSpec(
            name="efficientnet_b4",
            timm_name="efficientnet_b4",
            input_size=_B4_SIZE,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            interpolation="bicubic",
            colour_constancy=True,
            cam_layer="backbone.bn2",
            stages=_EFFICIENTNET_STAGES,
            embedding_dim=1792,
            description="plain EfficientNet-b4",
        ),
        ArchSpec(
            name="resnet101",
            timm_name="resnet101",
            input_size=224,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            interpolation="bicubic",
            colour_constancy=True,
            cam_layer="backbone.layer4",
            stages=(
                ("backbone.conv1", "backbone.bn1"),
                ("backbone.layer1",),
                ("backbone.layer2",),
                ("backbone.layer3",),
                ("backbone.layer4",),
                ("backbone.fc",),
            ),
            embedding_dim=2048,
            description="ResNet-101",
        ),
        ArchSpec(
            name="inception_v3",
            timm_name="inception_v3",
            input_size=299,
            mean=INCEPTION_MEAN,
            std=INCEPTION_STD,
            interpolation="bicubic",
            colour_constancy=True,
            cam_layer="backbone.Mixed_7c",
            stages=(
                tuple(
                    f"backbone.{n}"
                    for n in (
                        "Conv2d_1a_3x3",
                        "Conv2d_2a_3x3",
                        "Conv2d_2b_3x3",
                        "Conv2d_3b_1x1",
                        "Conv2d_4a_3x3",
                    )
                ),
                ("backbone.Mixed_5b", "backbone.Mixed_5c", "backbone.Mixed_5d"),
                ("backbone.Mixed_6a", "backbone.Mixed_6b", "backbone.Mixed_6c"),
                ("backbone.Mixed_6d", "backbone.Mixed_6e"),
                ("backbone.Mixed_7a", "backbone.Mixed_7b", "backbone.Mixed_7c"),
                ("backbone.fc",),
            ),
            embedding_dim=2048,
            description="Inception-v3",
        ),
    )
}


def list_archs() -> list[str]:
    """The registered architecture names, sorted."""
    return sorted(ARCHS)


def get_spec(arch: str) -> ArchSpec:
    """The spec of a registered architecture; ValueError naming the known ones."""
    try:
        return ARCHS[arch]
    except KeyError:
        raise ValueError(
            f"unknown architecture {arch!r}; known: {', '.join(list_archs())}"
        ) from None
