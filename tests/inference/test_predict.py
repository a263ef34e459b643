import io
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

from inference.predict import (
    ImageListDataset,
    ImageReadError,
    iter_batches,
    load_image,
    predict_images,
    restrict_to_choices,
)
from inference.preprocessing import Preprocessing

CLASSES = ["LP", "Rosa", "VW", "MN"]


def test_restrict_to_choices_hand_example():
    # Unrestricted, VW (3.0) would win; among the choices MN, Rosa and LP it is LP (2.0).
    top1, probs = restrict_to_choices([2.0, 1.0, 3.0, 0.5], CLASSES, ["MN", "Rosa", "LP"])
    assert top1 == "LP"
    # softmax([0.5, 1.0, 2.0]) = e^x / (e^0.5 + e^1 + e^2) = [0.14024, 0.23122, 0.62853]
    assert list(probs) == ["MN", "Rosa", "LP"]
    assert list(probs.values()) == pytest.approx([0.140244, 0.231224, 0.628532], abs=1e-6)


def test_restrict_to_choices_accepts_tensors_and_breaks_ties_by_choice_order():
    top1, probs = restrict_to_choices(torch.tensor([1.0, 1.0, 0.0, 0.0]), CLASSES, ["Rosa", "LP"])
    assert top1 == "Rosa"
    assert probs == pytest.approx({"Rosa": 0.5, "LP": 0.5})


@pytest.mark.parametrize(
    ("logits", "choices", "message"),
    [
        ([1.0, 2.0, 3.0, 4.0], ["MN", "BCC"], "unknown: \\['BCC'\\]"),
        ([1.0, 2.0, 3.0, 4.0], [], "non-empty"),
        ([1.0, 2.0], ["MN"], "expected 4 logits"),
    ],
)
def test_restrict_to_choices_rejects_bad_input(logits, choices, message):
    with pytest.raises(ValueError, match=message):
        restrict_to_choices(logits, CLASSES, choices)


def random_image(seed: int, size=(50, 40)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def setup(model_for):
    model = model_for("resnet101")
    preprocessing = Preprocessing.for_arch("resnet101", img_size=64)
    classes = ["LP", "Rosa", "VW", "MN", "BCC"]
    return model, preprocessing, classes


def test_predict_images_matches_a_direct_forward_pass(setup, tmp_path):
    model, preprocessing, classes = setup
    images = [random_image(i) for i in range(5)]
    images[1].save(tmp_path / "one.png")
    sources = [images[0], tmp_path / "one.png", png_bytes(images[2]), images[3], images[4]]

    results = predict_images(
        model, preprocessing, sources, classes=classes, choices=["MN", "BCC", "LP"], batch_size=2
    )

    transform = preprocessing.inference_transform()
    x = torch.stack([transform(im) for im in images])
    with torch.inference_mode():
        expected = model.eval().forward_all(x)
    assert len(results) == 5
    for r, logits, embedding in zip(results, expected.logits, expected.embedding, strict=True):
        np.testing.assert_allclose(r.logits, logits.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(r.embedding, embedding.numpy(), rtol=1e-4, atol=1e-5)
        assert list(r.probabilities) == classes
        assert sum(r.probabilities.values()) == pytest.approx(1.0)
        assert list(r.choice_probabilities) == ["MN", "BCC", "LP"]
        assert (r.top1, r.choice_probabilities) == restrict_to_choices(
            r.logits, classes, ["MN", "BCC", "LP"]
        )


def test_predict_without_choices_uses_all_classes_and_threads_change_nothing(setup):
    model, preprocessing, classes = setup
    images = [random_image(i) for i in range(3)]
    threaded = predict_images(model, preprocessing, images, classes=classes, batch_size=2)
    inline = predict_images(
        model, preprocessing, images, classes=classes, batch_size=3, num_workers=0
    )
    for a, b in zip(threaded, inline, strict=True):
        np.testing.assert_allclose(a.logits, b.logits, rtol=1e-4, atol=1e-5)
        assert a.top1 == max(a.probabilities, key=a.probabilities.get)
        assert list(a.choice_probabilities) == classes


def test_predict_rejects_a_class_list_of_the_wrong_length(setup):
    model, preprocessing, _ = setup
    with pytest.raises(ValueError, match="5 outputs but 2 classes"):
        predict_images(model, preprocessing, [random_image(0)], classes=["a", "b"])


def index_image(i: int) -> Image.Image:
    return Image.new("RGB", (2, 2), (i, 0, 0))


def red_value(image: Image.Image) -> torch.Tensor:
    # Later items finish first, so a mix-up of the order would show.
    time.sleep(0.002 * max(0, 10 - image.getpixel((0, 0))[0]))
    return torch.tensor([image.getpixel((0, 0))[0]])


def test_iter_batches_keeps_order_and_batch_sizes():
    images = [index_image(i) for i in range(7)]
    batches = list(iter_batches(images, red_value, batch_size=3, num_workers=3))
    assert [b.shape[0] for b in batches] == [3, 3, 1]
    assert torch.cat(batches).flatten().tolist() == list(range(7))
    inline = list(iter_batches(images, red_value, batch_size=3, num_workers=0))
    assert torch.cat(inline).flatten().tolist() == list(range(7))


def test_iter_batches_prepares_the_next_batches_while_the_consumer_works():
    pulled = []

    def sources():
        for i in range(20):
            pulled.append(i)
            yield index_image(i)

    prepared = threading.Event()

    def transform(image):
        if image.getpixel((0, 0))[0] == 5:  # an item of the second batch
            prepared.set()
        return red_value(image)

    batches = iter_batches(sources(), transform, batch_size=4, num_workers=2, prefetch_batches=1)
    first = next(batches)
    assert first.flatten().tolist() == [0, 1, 2, 3]
    # While the first batch is with the consumer, the second is being decoded ...
    assert prepared.wait(timeout=5)
    # ... but no more than prefetch_batches ahead.
    assert len(pulled) <= 4 * (1 + 1) + 4
    assert torch.cat([first, *batches]).flatten().tolist() == list(range(20))


def test_image_list_dataset_for_a_torch_dataloader(tmp_path):
    random_image(0).save(tmp_path / "a.png")
    dataset = ImageListDataset(
        [tmp_path / "a.png", random_image(1)], Preprocessing.for_arch("resnet101", img_size=32)
    )
    loader = torch.utils.data.DataLoader(dataset, batch_size=2)
    assert next(iter(loader)).shape == (2, 3, 32, 32)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_an_unreadable_image_is_reported_with_its_position(setup, num_workers):
    model, preprocessing, classes = setup
    sources = [random_image(0), b"not an image", random_image(1)]
    with pytest.raises(ImageReadError, match=r"image #1 \(bytes\) could not be read") as err:
        predict_images(model, preprocessing, sources, classes=classes, num_workers=num_workers)
    assert err.value.index == 1


def jpeg_bytes(size=(1024, 768)) -> bytes:
    buffer = io.BytesIO()
    random_image(7, size=(64, 48)).resize(size).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_jpeg_draft_decodes_at_reduced_scale_but_not_below_the_input_size():
    assert load_image(jpeg_bytes()).size == (1024, 768)
    assert load_image(jpeg_bytes(), draft_size=100).size == (256, 192)  # 1/4, not 1/8
    assert load_image(png_bytes(random_image(0)), draft_size=10).size == (50, 40)


def test_predict_with_jpeg_draft_is_close_to_a_full_decode(setup):
    model, preprocessing, classes = setup
    full, draft = (
        predict_images(model, preprocessing, [jpeg_bytes()], classes=classes, jpeg_draft=flag)[0]
        for flag in (False, True)
    )
    np.testing.assert_allclose(draft.embedding, full.embedding, rtol=0, atol=0.02)
