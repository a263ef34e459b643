"""Grad-CAM saliency maps (Selvaraju et al., ICCV 2017) from the prediction's own forward pass.

The target is the predicted class of ``model(x)``, i.e. of the summed logits for the
auxiliary-head EfficientNet (or the argmax over a subset of the classes, a study's
choices), and the layer is the architecture's ``ArchSpec.cam_layer`` (the last
convolutional stage). For the aux model only the final classifier's share of the summed
logits flows back through that layer: the auxiliary heads branch off earlier.

:func:`forward_with_cam` gives the network's outputs (logits, embedding) and the maps in
one forward pass: a forward hook hands the rest of the network a leaf copy of the CAM
layer's output, so autograd records only the few layers after it (pooling and the
classifier head), and ``torch.autograd.grad`` takes the target's gradient with respect
to that activation alone, with the weights frozen: no weight gradients, none back to the
input, no second forward. The maps are pytorch-grad-cam's ``GradCAM`` maps (a test
compares them): channel weights = the gradient averaged over space, the weighted sum of
the activation's channels, ReLU, scaled to [0, 1] per image, resized bilinearly to the
input size and scaled to [0, 1] again.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from pytorch_grad_cam.utils.image import show_cam_on_image
from torch import nn

from inference.nets import Net, NetOutput
from inference.preprocessing import Preprocessing, shades_of_gray


def cam_layer(model: Net) -> nn.Module:
    return model.get_submodule(model.spec.cam_layer)


class CamOutput(NamedTuple):
    """The network's outputs (detached), the maps (B, H, W) float32 in [0, 1] at the
    input's size, and the class index (B,) each map explains."""

    output: NetOutput
    cams: torch.Tensor
    classes: torch.Tensor


def forward_with_cam(
    model: Net,
    x: torch.Tensor,
    *,
    class_index: Sequence[int] | None = None,
    among: Sequence[int] | None = None,
) -> CamOutput:
    """One forward pass of ``x`` (B, 3, H, W) that also gives each image's Grad-CAM map.

    The explained class is ``class_index[i]`` if given, else the argmax of the logits,
    restricted to the class indices ``among`` if given (ties go to the earlier index,
    as in :func:`inference.predict.restrict_to_choices`). Runs the model in the mode it
    is in (call ``model.eval()`` first); its parameters are frozen for the pass and left
    as they were. Needs autograd, so it cannot run under ``torch.inference_mode()``.
    """
    if torch.is_inference_mode_enabled():
        raise RuntimeError("Grad-CAM needs gradients: call it outside torch.inference_mode()")
    captured: list[torch.Tensor] = []

    def hook(module, inputs, output):
        # A leaf: autograd records only what comes after it, and grad stops here.
        leaf = output.detach().requires_grad_(True)
        captured.append(leaf)
        return leaf

    handle = cam_layer(model).register_forward_hook(hook)
    try:
        with _frozen(model), torch.enable_grad():
            out = model.forward_all(x.detach())
            if len(captured) != 1:
                raise RuntimeError(
                    f"the CAM layer {model.spec.cam_layer} ran {len(captured)} times, not once"
                )
            activation = captured[0]
            logits = out.logits
            target = _targets(logits.detach(), class_index=class_index, among=among)
            score = logits.gather(1, target[:, None]).sum()
            (grad,) = torch.autograd.grad(score, activation)
    finally:
        handle.remove()
    cams = _cam_maps(activation.detach().float(), grad.float(), size=tuple(x.shape[-2:]))
    output = NetOutput(out.logits.detach(), out.embedding.detach(), [h.detach() for h in out.heads])
    return CamOutput(output, cams, target)


def _targets(
    logits: torch.Tensor, *, class_index: Sequence[int] | None, among: Sequence[int] | None
) -> torch.Tensor:
    if class_index is not None:
        target = torch.as_tensor(list(class_index), dtype=torch.long, device=logits.device)
        if target.shape != (logits.shape[0],):
            raise ValueError(f"expected {logits.shape[0]} class indices, got {len(target)}")
        if target.min() < 0 or target.max() >= logits.shape[1]:
            raise ValueError(f"class indices must lie in [0, {logits.shape[1]})")
        return target
    if among is None:
        return logits.argmax(dim=1)
    columns = torch.as_tensor(list(among), dtype=torch.long, device=logits.device)
    return columns[logits[:, columns].argmax(dim=1)]


def _cam_maps(activation: torch.Tensor, grad: torch.Tensor, *, size: tuple[int, int]):
    weights = grad.mean(dim=(2, 3))
    cams = torch.einsum("bc,bchw->bhw", weights, activation).clamp_min(0)
    cams = F.interpolate(_scaled(cams)[:, None], size=size, mode="bilinear", align_corners=False)
    return _scaled(cams[:, 0])


def _scaled(cams: torch.Tensor) -> torch.Tensor:
    """Each map minus its minimum, over its maximum (+1e-7), as pytorch-grad-cam does."""
    flat = cams.flatten(1)
    shifted = flat - flat.min(dim=1, keepdim=True).values
    return (shifted / (1e-7 + shifted.max(dim=1, keepdim=True).values)).view_as(cams)


@contextmanager
def _frozen(model: nn.Module) -> Iterator[None]:
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def gradcam(
    model: Net, x: torch.Tensor, *, class_index: list[int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM maps for a batch of preprocessed images ``x`` of shape (B, 3, H, W).

    Returns ``(cams, classes)``: float32 maps (B, H, W) scaled to [0, 1] per image, and
    the class index each map explains (the argmax of the logits unless ``class_index``
    is given). Puts the model in eval mode. Needs autograd, so it cannot run under
    ``torch.inference_mode()``. To have the predictions too, use :func:`forward_with_cam`.
    """
    model.eval()
    result = forward_with_cam(model, x, class_index=class_index)
    return result.cams.cpu().numpy(), result.classes.cpu().numpy()


def overlay_png(
    image_rgb_uint8: np.ndarray | Image.Image, cam: np.ndarray, *, alpha: float = 0.5
) -> bytes:
    """PNG bytes of the heat map (jet colour map) blended over the image.

    The map is resized to the image's size; ``alpha`` is the image's weight in the blend.
    """
    image = np.asarray(
        image_rgb_uint8.convert("RGB")
        if isinstance(image_rgb_uint8, Image.Image)
        else image_rgb_uint8
    )
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 HxWx3 RGB image, got {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    cam_image = Image.fromarray(np.asarray(cam, dtype=np.float32))
    cam_resized = np.asarray(cam_image.resize((width, height), Image.BILINEAR))
    blended = show_cam_on_image(
        image.astype(np.float32) / 255.0,
        np.clip(cam_resized, 0.0, 1.0),
        use_rgb=True,
        image_weight=alpha,
    )
    buffer = io.BytesIO()
    Image.fromarray(blended).save(buffer, format="PNG")
    return buffer.getvalue()


def saliency_overlay(
    model: Net,
    preprocessing: Preprocessing,
    image: Image.Image,
    *,
    class_index: int | None = None,
    alpha: float = 0.5,
) -> tuple[bytes, int]:
    """Grad-CAM of one image, overlaid on the image as the model saw it (after colour
    constancy, at the model's input size). Returns ``(png_bytes, class_index)``; pass
    ``class_index`` to explain e.g. the top-1 restricted to a study's choices.
    """
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    x = preprocessing.inference_transform()(rgb).unsqueeze(0)
    device = next(model.parameters()).device
    cams, classes = gradcam(
        model, x.to(device), class_index=None if class_index is None else [class_index]
    )
    shown = shades_of_gray(rgb, preprocessing.p) if preprocessing.colour_constancy else rgb
    shown = shown.resize((preprocessing.input_size,) * 2, Image.BICUBIC)
    return overlay_png(np.asarray(shown), cams[0], alpha=alpha), int(classes[0])
