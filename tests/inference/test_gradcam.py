import io

import numpy as np
import pytest
import torch
from PIL import Image

from inference.gradcam import gradcam, overlay_png, saliency_overlay
from inference.preprocessing import Preprocessing
from tests.inference.factories import tiny_input, tiny_size


def test_gradcam_shape_range_and_target_for_each_arch(arch, model_for):
    model = model_for(arch)
    x = tiny_input(arch)
    with torch.inference_mode():
        predicted = model(x).argmax(dim=1).numpy()

    cams, explained = gradcam(model, x)

    size = tiny_size(arch)
    assert cams.shape == (2, size, size) and cams.dtype == np.float32
    assert np.isfinite(cams).all()
    assert cams.min() >= 0.0 and cams.max() <= 1.0
    assert cams.max() == pytest.approx(1.0, abs=1e-3)  # a real map, not a blank one
    np.testing.assert_array_equal(explained, predicted)
    assert all(p.grad is None for p in model.parameters())


def test_gradcam_accepts_inference_mode_inputs_and_a_chosen_class(model_for):
    model = model_for("efficientnet_b4_aux")
    with torch.inference_mode():
        x = tiny_input("efficientnet_b4_aux")
    cams, explained = gradcam(model, x, class_index=[0, 4])
    assert cams.shape[0] == 2
    assert explained.tolist() == [0, 4]


def test_overlay_png_is_the_image_size_and_coloured():
    image = np.full((30, 50, 3), 120, dtype=np.uint8)
    cam = np.zeros((8, 8), dtype=np.float32)
    cam[:4] = 1.0

    png = overlay_png(image, cam)

    decoded = Image.open(io.BytesIO(png))
    assert decoded.format == "PNG" and decoded.size == (50, 30)
    pixels = np.asarray(decoded.convert("RGB")).astype(int)
    hot, cold = pixels[2, 25], pixels[27, 25]
    assert hot[0] > hot[2]  # red where the map is high (jet colour map)
    assert cold[2] > cold[0]  # blue where it is low


def test_overlay_png_accepts_pil_images():
    image = Image.new("RGB", (20, 10), (10, 200, 10))
    png = overlay_png(image, np.ones((5, 5), dtype=np.float32))
    assert Image.open(io.BytesIO(png)).size == (20, 10)


def test_overlay_png_rejects_non_rgb_arrays():
    with pytest.raises(ValueError, match="uint8 HxWx3"):
        overlay_png(np.zeros((4, 4), dtype=np.float32), np.zeros((4, 4)))


def test_saliency_overlay_of_one_image(model_for):
    model = model_for("efficientnet_b4_aux")
    preprocessing = Preprocessing.for_arch("efficientnet_b4_aux", img_size=64)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8))

    png, explained = saliency_overlay(model, preprocessing, image, class_index=3)

    assert explained == 3
    assert Image.open(io.BytesIO(png)).size == (64, 64)


def test_gradcam_refuses_to_run_under_inference_mode(model_for):
    with (
        torch.inference_mode(),
        pytest.raises(RuntimeError, match=r"outside torch\.inference_mode"),
    ):
        gradcam(model_for("resnet101"), tiny_input("resnet101"))
