"""CNN architectures for the reader studies, built with timm and registered by name.

Every registered builder returns a :class:`Net`: ``model(x)`` gives the logits used for
the diagnosis and ``model.forward_all(x)`` gives a :class:`NetOutput` with the embedding
(the pooled features before the final classifier, 1792-d for EfficientNet-b4) and the
per-head logits that the deep-supervision loss needs.

The registry follows timm: small builder functions registered with a decorator, each
with an :class:`ArchSpec` that carries the preprocessing the weights expect and the layer
Grad-CAM should look at. No Django imports here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import timm
import torch
from torch import nn


class NetOutput(NamedTuple):
    """Logits ``(B, C)``, embedding ``(B, D)`` and the per-head logits summed into ``logits``."""

    logits: torch.Tensor
    embedding: torch.Tensor
    heads: list[torch.Tensor]


@dataclass(frozen=True)
class ArchSpec:
    """What a registered architecture needs around it.

    ``cam_layer`` and the entries of ``stages`` are dotted submodule names of the built
    :class:`Net`. ``stages`` lists parameter groups from the input to the output (the
    last one is the classifier head); gradual unfreezing releases them back to front.
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


class Net(nn.Module):
    """A timm backbone behind the uniform interface; its own classifier is the only head."""

    def __init__(self, backbone: nn.Module, spec: ArchSpec):
        super().__init__()
        self.backbone = backbone
        self.spec = spec
        self.num_classes = backbone.num_classes

    def forward_all(self, x: torch.Tensor) -> NetOutput:
        features = self.backbone.forward_features(x)
        # forward_head(pre_logits=True) pools and applies the backbone's own dropout.
        embedding = self.backbone.forward_head(features, pre_logits=True)
        logits = self.backbone.get_classifier()(embedding)
        return NetOutput(logits, embedding, [logits])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_all(x).logits

    def stage_modules(self) -> list[list[nn.Module]]:
        """Parameter groups from the stem to the head, as listed in ``spec.stages``."""
        return [[self.get_submodule(name) for name in stage] for stage in self.spec.stages]


def init_head(linear: nn.Linear) -> nn.Linear:
    """Fresh classifier heads start small (normal, std 0.01; zero bias).

    timm's default for EfficientNet (uniform +-1/sqrt(num_classes)) gives logits in the
    tens on 1792-d features, which makes the first epochs of fine-tuning erratic.
    """
    nn.init.trunc_normal_(linear.weight, std=0.01)
    nn.init.zeros_(linear.bias)
    return linear


class AuxHead(nn.Module):
    """Global average pooling, then a linear layer to the classes."""

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.fc = init_head(nn.Linear(in_channels, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean(dim=(2, 3)))


class AuxEfficientNet(Net):
    """EfficientNet with an auxiliary classifier after each block stage (Zhu et al. 2021).

    The logits are the element-wise sum of the seven auxiliary heads and the backbone's
    own classifier on the pooled head features; ``heads`` lists them in that order.
    """

    def __init__(self, backbone: nn.Module, spec: ArchSpec):
        super().__init__(backbone, spec)
        self.aux_heads = nn.ModuleList(
            AuxHead(c, self.num_classes) for c in stage_out_channels(backbone)
        )

    def forward_all(self, x: torch.Tensor) -> NetOutput:
        b = self.backbone
        x = b.bn1(b.conv_stem(x))
        heads = []
        for stage, head in zip(b.blocks, self.aux_heads, strict=True):
            x = stage(x)
            heads.append(head(x))
        x = b.bn2(b.conv_head(x))
        embedding = b.forward_head(x, pre_logits=True)
        heads.append(b.classifier(embedding))
        logits = torch.stack(heads).sum(dim=0)
        return NetOutput(logits, embedding, heads)


def stage_out_channels(efficientnet: nn.Module) -> list[int]:
    """Output channels of each block stage: the last convolution of its last block."""
    channels = []
    for stage in efficientnet.blocks:
        convs = [m for m in stage[-1].modules() if isinstance(m, nn.Conv2d)]
        channels.append(convs[-1].out_channels)
    return channels


_registry: dict[str, tuple[Callable[..., Net], ArchSpec]] = {}


def register(spec: ArchSpec):
    """Register a builder ``fn(*, num_classes, pretrained) -> Net`` under ``spec.name``."""

    def decorator(fn: Callable[..., Net]) -> Callable[..., Net]:
        if spec.name in _registry:
            raise ValueError(f"architecture {spec.name!r} is already registered")
        _registry[spec.name] = (fn, spec)
        return fn

    return decorator


def list_archs() -> list[str]:
    return sorted(_registry)


def get_spec(arch: str) -> ArchSpec:
    try:
        return _registry[arch][1]
    except KeyError:
        raise ValueError(
            f"unknown architecture {arch!r}; known: {', '.join(list_archs())}"
        ) from None


def build_model(
    arch: str, *, num_classes: int, pretrained: bool = False, img_size: int | None = None
) -> Net:
    """Build a registered architecture.

    ``pretrained=True`` loads timm's ImageNet weights for the backbone (downloaded by timm;
    needs network access or a filled cache); the ``num_classes``-wide classifier heads are
    always fresh (see :func:`init_head`). ``img_size`` is only recorded (``model.input_size``)
    for the preprocessing: all registered networks pool globally and take any size.
    """
    spec = get_spec(arch)
    fn = _registry[arch][0]
    model = fn(num_classes=num_classes, pretrained=pretrained)
    init_head(model.backbone.get_classifier())
    model.input_size = img_size or spec.input_size
    return model


def _timm_preprocessing(timm_name: str) -> dict:
    cfg = timm.models.get_pretrained_cfg(timm_name)
    return dict(mean=tuple(cfg.mean), std=tuple(cfg.std), interpolation=cfg.interpolation)


_EFFICIENTNET_STAGES = (
    ("backbone.conv_stem", "backbone.bn1"),
    *((f"backbone.blocks.{i}",) for i in range(7)),
    ("backbone.conv_head", "backbone.bn2", "backbone.classifier"),
)

# EfficientNet-b4's native resolution (Tan & Le 2019) and the paper's input size; timm's
# ra2 weights were trained at 320 and tested at 384.
_B4_SIZE = 380


@register(
    ArchSpec(
        name="efficientnet_b4_aux",
        timm_name="efficientnet_b4",
        input_size=_B4_SIZE,
        **_timm_preprocessing("efficientnet_b4"),
        colour_constancy=True,
        cam_layer="backbone.bn2",
        stages=(
            *_EFFICIENTNET_STAGES[:-1],
            (*_EFFICIENTNET_STAGES[-1], "aux_heads"),
        ),
        embedding_dim=1792,
        description="EfficientNet-b4 + 7 auxiliary classifiers, logits summed (Zhu et al. 2021)",
    )
)
def efficientnet_b4_aux(*, num_classes: int, pretrained: bool = False) -> Net:
    backbone = timm.create_model("efficientnet_b4", pretrained=pretrained, num_classes=num_classes)
    return AuxEfficientNet(backbone, get_spec("efficientnet_b4_aux"))


@register(
    ArchSpec(
        name="efficientnet_b4",
        timm_name="efficientnet_b4",
        input_size=_B4_SIZE,
        **_timm_preprocessing("efficientnet_b4"),
        colour_constancy=True,
        cam_layer="backbone.bn2",
        stages=_EFFICIENTNET_STAGES,
        embedding_dim=1792,
        description="plain EfficientNet-b4",
    )
)
def efficientnet_b4(*, num_classes: int, pretrained: bool = False) -> Net:
    backbone = timm.create_model("efficientnet_b4", pretrained=pretrained, num_classes=num_classes)
    return Net(backbone, get_spec("efficientnet_b4"))


@register(
    ArchSpec(
        name="resnet101",
        timm_name="resnet101",
        input_size=224,
        **_timm_preprocessing("resnet101"),
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
    )
)
def resnet101(*, num_classes: int, pretrained: bool = False) -> Net:
    backbone = timm.create_model("resnet101", pretrained=pretrained, num_classes=num_classes)
    return Net(backbone, get_spec("resnet101"))


@register(
    ArchSpec(
        name="inception_v3",
        timm_name="inception_v3",
        input_size=299,
        **_timm_preprocessing("inception_v3"),
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
    )
)
def inception_v3(*, num_classes: int, pretrained: bool = False) -> Net:
    backbone = timm.create_model("inception_v3", pretrained=pretrained, num_classes=num_classes)
    return Net(backbone, get_spec("inception_v3"))
