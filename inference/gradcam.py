"""Grad-CAM saliency maps (Selvaraju et al., ICCV 2017) via the grad-cam package.

The target is the predicted class of ``model(x)``, i.e. of the summed logits for the
auxiliary-head EfficientNet, and the layer is the architecture's ``ArchSpec.cam_layer``
(the last convolutional stage). For the aux model only the final classifier's share of
the summed logits flows back through that layer: the auxiliary heads branch off
earlier.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from inference.nets import Net
from inference.preprocessing import Preprocessing, shades_of_gray


def cam_layer(model: Net) -> nn.Module:
    return model.get_submodule(model.spec.cam_layer)


def gradcam(
    model: Net, x: torch.Tensor, *, class_index: list[int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM maps for a batch of preprocessed images ``x`` of shape (B, 3, H, W).

    Returns ``(cams, classes)``: float32 maps (B, H, W) scaled to [0, 1] per image, and
    the class index each map explains (the argmax of the logits unless ``class_index``
    is given). Puts the model in eval mode (the grad-cam package does). Needs autograd,
    so it cannot run under ``torch.inference_mode()``.
    """
    if torch.is_inference_mode_enabled():
        raise RuntimeError("Grad-CAM needs gradients: call it outside torch.inference_mode()")
    model.eval()
    # A plain tensor that requires grad, so that frozen weights or an input made under
    # inference_mode still give activations with gradients.
    x = x.detach().clone().requires_grad_(True)
    model.zero_grad(set_to_none=True)
    if class_index is None:
        with torch.no_grad():
            class_index = model(x).argmax(dim=1).tolist()
    targets = [ClassifierOutputTarget(int(c)) for c in class_index]
    with torch.enable_grad(), GradCAM(model=model, target_layers=[cam_layer(model)]) as cam:
        maps = cam(input_tensor=x, targets=targets)
    model.zero_grad(set_to_none=True)
    return np.clip(maps, 0.0, 1.0).astype(np.float32), np.asarray(class_index)


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
