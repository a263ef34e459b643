import io

import numpy as np
import pytest
import torch
from PIL import Image
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from inference.gradcam import cam_layer, forward_with_cam, gradcam, overlay_png, saliency_overlay
from inference.predict import predict_images
from inference.preprocessing import Preprocessing
from tests.inference.factories import seeded_model, shape_image, tiny_input, tiny_size


def generated_batch(arch: str) -> torch.Tensor:
    """Six generated shape images, preprocessed for ``arch`` at its tiny size."""
    transform = Preprocessing.for_arch(arch, img_size=tiny_size(arch)).inference_transform()
    kinds = ("disc", "square", "stripes")
    return torch.stack([transform(shape_image(k, size=48, seed=s)) for k in kinds for s in (0, 1)])


def reference_cams(model, x: torch.Tensor, classes=None) -> tuple[np.ndarray, list[int]]:
    """pytorch-grad-cam's GradCAM on the same layer: a second forward and a full backward."""
    if classes is None:
        with torch.no_grad():
            classes = model(x).argmax(dim=1).tolist()
    with GradCAM(model=model, target_layers=[cam_layer(model)]) as cam:
        maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(c) for c in classes])
    model.zero_grad(set_to_none=True)
    return maps, list(classes)


def assert_same_maps(ours: np.ndarray, reference: np.ndarray) -> None:
    """Pearson r >= 0.999 per map; a map that ReLU blanked must be blank in both, and
    most maps must have something to correlate."""
    assert ours.shape == reference.shape
    blank = reference.reshape(len(reference), -1).std(axis=1) == 0
    assert blank.sum() <= len(reference) // 3
    for mine, theirs, is_blank in zip(ours, reference, blank, strict=True):
        if is_blank:
            assert mine.max() == pytest.approx(theirs.max(), abs=1e-6) and mine.std() == 0
        else:
            assert np.corrcoef(mine.ravel(), theirs.ravel())[0, 1] >= 0.999


def test_maps_equal_pytorch_grad_cams_for_each_arch(arch):
    model = seeded_model(arch)  # its own: the reference leaves gradients on the weights
    x = generated_batch(arch)

    cams, explained = gradcam(model, x)
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    reference, classes = reference_cams(model, x)

    assert explained.tolist() == classes
    assert_same_maps(cams, reference)


def test_predictions_carry_the_map_of_their_restricted_top1_from_one_forward(model_for):
    arch = "efficientnet_b4_aux"
    model = model_for(arch)
    preprocessing = Preprocessing.for_arch(arch, img_size=64)
    images = [
        shape_image(k, size=48, seed=s) for k in ("disc", "square", "stripes") for s in (0, 1)
    ]
    classes, choices = ["LP", "Rosa", "VW", "MN", "BCC"], ["MN", "VW", "LP"]
    passes = []  # the batch size of each pass through the CAM layer
    handle = cam_layer(model).register_forward_hook(lambda m, i, out: passes.append(len(out)))
    try:
        with_cam = predict_images(model, preprocessing, images, classes=classes, choices=choices,
                                  batch_size=4, with_gradcam=True)  # fmt: skip
    finally:
        handle.remove()
    plain = predict_images(model, preprocessing, images, classes=classes, choices=choices)

    assert passes == [4, 2]  # one forward per batch: none for the target, none for the map
    for a, b in zip(with_cam, plain, strict=True):
        np.testing.assert_allclose(a.logits, b.logits, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(a.embedding, b.embedding, rtol=1e-4, atol=1e-5)
        assert a.top1 == b.top1 and b.cam is None
        assert a.cam.shape == (64, 64) and a.cam.dtype == np.float32
    x = torch.stack([preprocessing.inference_transform()(im) for im in images])
    top1 = [classes.index(r.top1) for r in with_cam]
    reference, _ = reference_cams(model, x, classes=top1)
    assert_same_maps(np.stack([r.cam for r in with_cam]), reference)


def test_only_the_layers_after_the_cam_layer_are_recorded(model_for):
    model = model_for("efficientnet_b4_aux")
    recorded = {}

    def probe(name):
        def hook(module, inputs, output):
            recorded[name] = output.requires_grad

        return hook

    names = ("backbone.conv_stem", "backbone.blocks.6", "aux_heads.6", "backbone.classifier")
    handles = [model.get_submodule(n).register_forward_hook(probe(n)) for n in names]
    try:
        result = forward_with_cam(model, tiny_input("efficientnet_b4_aux"), among=[1, 3])
    finally:
        for handle in handles:
            handle.remove()

    assert recorded == {
        "backbone.conv_stem": False,
        "backbone.blocks.6": False,
        "aux_heads.6": False,
        "backbone.classifier": True,
    }
    assert set(result.classes.tolist()) <= {1, 3}
    assert not result.output.logits.requires_grad
    assert all(p.grad is None for p in model.parameters())


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
