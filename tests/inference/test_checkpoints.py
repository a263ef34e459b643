import hashlib
import io
import pickle

import pytest
import torch
from torch import nn

from inference.checkpoints import (
    Checkpoint,
    CheckpointError,
    apply_weights,
    load_checkpoint,
    load_model,
    save_checkpoint,
    sha256_file,
)
from inference.nets import build_model
from inference.preprocessing import Preprocessing
from tests.inference.factories import NUM_CLASSES

CLASSES = ["MN", "SK", "BCC", "EAD", "SD"]


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2)
    ).eval()


def tiny_model() -> nn.Module:
    model = small_net()
    model(torch.zeros(1, 3, 5, 5))  # materialise the lazy layer: Linear(36, 2)
    return model


def saved(obj) -> io.BytesIO:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return buffer


@pytest.fixture(scope="module")
def saved_b4(tmp_path_factory, model_for):
    path = tmp_path_factory.mktemp("ckpt") / "b4.pt"
    sha = save_checkpoint(
        path,
        model=model_for("efficientnet_b4"),
        arch="efficientnet_b4",
        classes=CLASSES,
        preprocessing=Preprocessing.for_arch("efficientnet_b4", img_size=64),
        meta={"trained": False, "note": "random init"},
    )
    return path, sha


def test_round_trip_keeps_weights_and_metadata(saved_b4, model_for):
    path, sha = saved_b4
    assert sha == sha256_file(path) == hashlib.sha256(path.read_bytes()).hexdigest()

    ckpt = load_checkpoint(path)
    assert ckpt.arch == "efficientnet_b4"
    assert ckpt.classes == CLASSES
    assert Preprocessing.from_dict(ckpt.preprocessing).input_size == 64
    assert ckpt.meta == {"trained": False, "note": "random init"}
    assert ckpt.trained is False

    torch.manual_seed(99)
    fresh = build_model("efficientnet_b4", num_classes=NUM_CLASSES)
    apply_weights(fresh, ckpt.state_dict)
    original = model_for("efficientnet_b4").state_dict()
    restored = fresh.state_dict()
    assert restored.keys() == original.keys()
    assert all(torch.equal(restored[k], original[k]) for k in original)


def test_load_model_builds_the_architecture_in_eval_mode(saved_b4):
    with open(saved_b4[0], "rb") as f:  # file objects work as well as paths
        loaded = load_model(f)
    assert loaded.arch == "efficientnet_b4"
    assert loaded.classes == CLASSES
    assert loaded.preprocessing == Preprocessing.for_arch("efficientnet_b4", img_size=64)
    assert not loaded.model.training
    assert loaded.meta["trained"] is False


def test_trained_defaults_to_true():
    assert Checkpoint(state_dict={}).trained
    assert Checkpoint(state_dict={}, meta={"trained": True}).trained


@pytest.mark.parametrize("wrapper_key", [None, "state_dict", "model", "model_state_dict"])
def test_foreign_checkpoints_and_module_prefixes(wrapper_key):
    model = tiny_model()
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    obj = state if wrapper_key is None else {wrapper_key: state, "epoch": 7}
    ckpt = load_checkpoint(saved(obj))
    assert set(ckpt.state_dict) == set(model.state_dict())
    assert ckpt.arch is None and ckpt.classes is None and ckpt.trained
    other = tiny_model()
    with torch.no_grad():
        other[0].weight.add_(1.0)
    apply_weights(other, ckpt.state_dict)
    torch.testing.assert_close(other[0].weight, model[0].weight)


def test_plain_timm_state_dict_fits_the_wrapped_model(model_for):
    plain_state = model_for("resnet101").backbone.state_dict()
    target = build_model("resnet101", num_classes=NUM_CLASSES)
    apply_weights(target, plain_state)
    torch.testing.assert_close(target.backbone.fc.weight, plain_state["fc.weight"])


def test_wrong_shape_names_the_first_mismatching_key_and_both_shapes(model_for):
    state = model_for("efficientnet_b4_aux").state_dict()
    three_classes = build_model("efficientnet_b4_aux", num_classes=3)
    with pytest.raises(CheckpointError) as err:
        apply_weights(three_classes, state)
    message = str(err.value)
    assert "shape mismatch for backbone.classifier.weight" in message
    assert "(5, 1792)" in message and "(3, 1792)" in message
    assert "aux_heads" not in message  # only the first mismatch is named


def test_missing_keys_are_listed():
    state = tiny_model().state_dict()
    del state["0.weight"], state["3.bias"]
    with pytest.raises(CheckpointError, match=r"2 missing key\(s\): 0\.weight, 3\.bias"):
        apply_weights(tiny_model(), state)


def test_unexpected_keys_are_listed_and_capped():
    state = tiny_model().state_dict()
    state.update({f"extra.{i}": torch.zeros(1) for i in range(7)})
    with pytest.raises(CheckpointError) as err:
        apply_weights(tiny_model(), state)
    assert "7 unexpected key(s): extra.0, extra.1" in str(err.value)
    assert "(2 more)" in str(err.value)


def test_missing_batchnorm_counters_are_tolerated():
    state = tiny_model().state_dict()
    del state["1.num_batches_tracked"]
    apply_weights(tiny_model(), state)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not a PyTorch checkpoint"),
        (b"\x89PNG\r\n\x1a\n" + bytes(range(200)), "not a PyTorch checkpoint"),
        (pickle.dumps({"a": 1}), "not a PyTorch checkpoint"),
        (saved([1, 2, 3]).getvalue(), "holds a list"),
        (saved({"epoch": 3, "lr": 0.1}).getvalue(), "no state_dict found"),
        (saved({"model": nn.Linear(2, 2)}).getvalue(), "pickled Python objects"),
    ],
    ids=["empty", "png", "plain-pickle", "list", "no-tensors", "whole-module"],
)
def test_not_a_checkpoint(data, message):
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(io.BytesIO(data))


def test_missing_file_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(tmp_path / "nope.pt")


def test_save_refuses_classes_that_do_not_match_the_outputs(tmp_path, model_for):
    with pytest.raises(ValueError, match="5 outputs but 2 classes"):
        save_checkpoint(
            tmp_path / "x.pt",
            model=model_for("efficientnet_b4"),
            arch="efficientnet_b4",
            classes=["a", "b"],
            preprocessing=Preprocessing.for_arch("efficientnet_b4"),
            meta={},
        )
    assert list(tmp_path.iterdir()) == []


def test_load_model_needs_arch_and_classes_for_a_bare_state_dict():
    with pytest.raises(CheckpointError, match="architecture and classes"):
        load_model(saved(tiny_model().state_dict()))
