"""CNN architectures for the reader studies, built with timm and registered by name.

Every registered builder returns a :class:`Net`: ``model(x)`` gives the logits used for
the diagnosis and ``model.forward_all(x)`` gives a :class:`NetOutput` with the embedding
(the pooled features before the final classifier, 1792-d for EfficientNet-b4) and the
per-head logits that the deep-supervision loss needs.

The registry follows timm: small builder functions registered with a decorator under a
name of :mod:`inference.archs`, whose :class:`ArchSpec` (plain data, no torch) carries
the preprocessing the weights expect and the layer Grad-CAM should look at. No Django
imports here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import timm
import torch
from torch import nn

from inference.archs import ArchSpec, get_spec, list_archs

__all__ = ["ArchSpec", "Net", "NetOutput", "build_model", "get_spec", "list_archs", "register"]


class NetOutput(NamedTuple):
    """Logits ``(B, C)``, embedding ``(B, D)`` and the per-head logits summed into ``logits``."""

    logits: torch.Tensor
    embedding: torch.Tensor
    heads: list[torch.Tensor]


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


_builders: dict[str, Callable[..., Net]] = {}


def register(name: str):
    """Register a builder ``fn(*, num_classes, pretrained) -> Net`` for the architecture
    ``name`` of :data:`inference.archs.ARCHS`."""
    get_spec(name)  # raises on a name without a spec

    def decorator(fn: Callable[..., Net]) -> Callable[..., Net]:
        if name in _builders:
            raise ValueError(f"architecture {name!r} is already registered")
        _builders[name] = fn
        return fn

    return decorator


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
    fn = _builders[arch]
    model = fn(num_classes=num_classes, pretrained=pretrained)
    init_head(model.backbone.get_classifier())
    model.input_size = img_size or spec.input_size
    return model


@register("efficientnet_b4_aux")
def efficientnet_b4_aux(*, num_classes: int, pretrained: bool = False) -> Net:
    backbone = timm.create_model("efficientnet_b4", pretrained=pretrained, num_classes=num_classes)
    return AuxEfficientNet(backbone, get_spec("efficientnet_b4_aux"))


@register("efficientnet_b4")
def efficientnet_b4(*, num_classes: int, pretrained: bool = False) -> Net:
    backbone = timm.create_model("efficientnet_b4", pretrained=pretrained, num_classes=num_classes)
    return Net(backbone, get_spec("efficientnet_b4"))


@register("resnet101")
def resnet101(*, num_classes: int, pretrained: bool = False) -> Net:
    backbone = timm.create_model("resnet101", pretrained=pretrained, num_classes=num_classes)
    return Net(backbone, get_spec("resnet101"))


@register("inception_v3")
def inception_v3(*, num_classes: int, pretrained: bool = False) -> Net:
    backbone = timm.create_model("inception_v3", pretrained=pretrained, num_classes=num_classes)
    return Net(backbone, get_spec("inception_v3"))
