import json

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from inference.preprocessing import (
    Preprocessing,
    ShadesOfGray,
    illuminant,
    shades_of_gray,
)


def cast_image(cast=(1.0, 0.8, 0.55), seed=0) -> np.ndarray:
    """A grey texture seen under a coloured light: every channel proportional to it."""
    grey = np.random.default_rng(seed).integers(40, 160, (48, 64)).astype(np.float64)
    return np.stack([grey * c for c in cast], axis=-1).round().astype(np.uint8)


def test_illuminant_is_the_minkowski_p_norm_per_channel():
    image = cast_image()
    expected = np.mean(image.astype(np.float64) ** 6, axis=(0, 1)) ** (1 / 6)
    np.testing.assert_allclose(illuminant(image, p=6), expected, rtol=1e-9)


def test_shades_of_gray_removes_a_colour_cast():
    image = cast_image()
    means_before = image.reshape(-1, 3).mean(axis=0)
    assert means_before.max() - means_before.min() > 40

    corrected = shades_of_gray(image)

    assert corrected.dtype == np.uint8 and corrected.shape == image.shape
    means = corrected.reshape(-1, 3).mean(axis=0)
    assert means.max() - means.min() < 0.5
    # Pixel by pixel, too: the texture comes out grey (up to rounding of the cast image).
    channels = corrected.astype(int)
    assert np.abs(channels - channels[..., :1]).max() <= 2


def test_shades_of_gray_equalises_the_p_norms_of_any_image():
    rng = np.random.default_rng(3)
    image = (rng.integers(0, 120, (40, 40, 3)) * [1.0, 0.7, 1.2]).astype(np.uint8)
    norms = illuminant(shades_of_gray(image))
    assert norms.max() - norms.min() < 0.6


def test_shades_of_gray_leaves_a_neutral_image_alone():
    grey = np.repeat(np.random.default_rng(1).integers(0, 256, (20, 30, 1)), 3, axis=2)
    grey = grey.astype(np.uint8)
    np.testing.assert_array_equal(shades_of_gray(grey), grey)


def test_shades_of_gray_skips_an_image_with_a_black_channel():
    image = cast_image(cast=(1.0, 0.5, 0.0))
    np.testing.assert_array_equal(shades_of_gray(image), image)


def test_pil_and_array_inputs_agree():
    image = cast_image()
    result = shades_of_gray(Image.fromarray(image))
    assert isinstance(result, Image.Image) and result.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(result), shades_of_gray(image))
    np.testing.assert_array_equal(
        np.asarray(ShadesOfGray()(Image.fromarray(image))), np.asarray(result)
    )


def test_rejects_non_rgb_arrays():
    with pytest.raises(ValueError, match="uint8 HxWx3"):
        shades_of_gray(np.zeros((4, 4), dtype=np.uint8))


def test_preprocessing_round_trips_through_json():
    pre = Preprocessing.for_arch("inception_v3", img_size=96)
    data = json.loads(json.dumps(pre.to_dict()))
    assert Preprocessing.from_dict(data) == pre
    assert data == {
        "input_size": 96,
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
        "interpolation": "bicubic",
        "colour_constancy": True,
        "p": 6,
    }


def test_preprocessing_rejects_unknown_keys_and_interpolations():
    with pytest.raises(ValueError, match="unknown preprocessing keys"):
        Preprocessing.from_dict({**Preprocessing.for_arch("resnet101").to_dict(), "crop": 0.9})
    with pytest.raises(ValueError):
        Preprocessing(input_size=8, mean=(0, 0, 0), std=(1, 1, 1), interpolation="magic")


def test_inference_transform_resizes_and_normalises():
    pre = Preprocessing(input_size=16, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.5))
    flat = Image.new("RGB", (40, 30), (102, 102, 102))  # neutral: colour constancy is a no-op
    x = pre.inference_transform()(flat)
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32
    expected = (102 / 255 - torch.tensor(pre.mean)) / torch.tensor(pre.std)
    torch.testing.assert_close(x[:, 5, 7], expected)


def test_inference_transform_applies_colour_constancy_only_when_asked():
    image = Image.fromarray(cast_image())
    on = Preprocessing(input_size=16, mean=(0, 0, 0), std=(1, 1, 1))
    off = Preprocessing(input_size=16, mean=(0, 0, 0), std=(1, 1, 1), colour_constancy=False)
    spread_on = on.inference_transform()(image).mean(dim=(1, 2))
    spread_off = off.inference_transform()(image).mean(dim=(1, 2))
    assert (spread_on.max() - spread_on.min()) < 0.01 < (spread_off.max() - spread_off.min())


def test_training_transform_adds_rotation_and_flips():
    pre = Preprocessing(input_size=16, mean=(0, 0, 0), std=(1, 1, 1))
    steps = pre.training_transform().transforms
    rotation = next(t for t in steps if isinstance(t, transforms.RandomRotation))
    assert rotation.degrees == [-30.0, 30.0]
    flips = [
        t
        for t in steps
        if isinstance(t, transforms.RandomHorizontalFlip | transforms.RandomVerticalFlip)
    ]
    assert sorted(type(t).__name__ for t in flips) == ["RandomHorizontalFlip", "RandomVerticalFlip"]
    assert all(t.p == 0.5 for t in flips)

    torch.manual_seed(0)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8))
    outputs = {pre.training_transform()(image).sum().item() for _ in range(5)}
    assert len(outputs) > 1
    assert pre.training_transform()(image).shape == (3, 16, 16)


def test_pixel_transform_plus_batch_normalisation_equals_the_inference_transform():
    pre = Preprocessing.for_arch("resnet101", img_size=24)
    rng = np.random.default_rng(5)
    images = [Image.fromarray(rng.integers(0, 255, (30, 41, 3), dtype=np.uint8)) for _ in range(3)]
    pixels = torch.stack([pre.pixel_transform()(im) for im in images])
    assert pixels.dtype == torch.uint8 and pixels.shape == (3, 24, 24, 3)

    batch = pre.normalize_batch(pixels)

    assert batch.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(
        batch, torch.stack([pre.inference_transform()(im) for im in images]), rtol=0, atol=0
    )
