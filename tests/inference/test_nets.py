import copy

import pytest
import timm
import torch

from inference.nets import (
    AuxEfficientNet,
    NetOutput,
    build_model,
    get_spec,
    list_archs,
    stage_out_channels,
)
from tests.inference.factories import NUM_CLASSES, tiny_input

# Logits of seeded_model(arch) (seed 0) on tiny_input(arch) (seed 1), row 0, and the sum
# of both rows' embeddings: guards against silent changes in how the architectures are
# built or wired (timm upgrades included). In train mode: with random weights, eval-mode
# BatchNorm (running stats 0/1) makes EfficientNet's outputs vanish and Inception's
# explode, which would make a weak golden.
GOLDEN = {
    "efficientnet_b4": ([0.0184, -0.0023, -0.1435, -0.0359, 0.0611], 762.295),
    "efficientnet_b4_aux": ([0.1527, -0.0708, 0.2736, -0.2305, -0.1772], 762.295),
    "inception_v3": ([-0.2737, 0.117, 0.4337, 0.2198, -0.4337], 1660.34),
    "resnet101": ([0.2561, 0.3108, 0.0295, 0.1523, -0.0368], 1693.01),
}


def test_registry_lists_the_four_architectures():
    assert list_archs() == ["efficientnet_b4", "efficientnet_b4_aux", "inception_v3", "resnet101"]


def test_every_torch_free_spec_has_a_builder_and_timm_normalisation():
    """inference.archs holds the specs as plain data (no torch); they must stay those of
    timm's default pretrained config, and each must have a torch builder."""
    from inference import archs, nets
    from inference.preprocessing import INTERPOLATIONS

    assert sorted(nets._builders) == archs.list_archs()
    for name in archs.list_archs():
        spec = archs.get_spec(name)
        cfg = timm.models.get_pretrained_cfg(spec.timm_name)
        assert spec.mean == pytest.approx(tuple(cfg.mean)), name
        assert spec.std == pytest.approx(tuple(cfg.std)), name
        assert spec.interpolation == cfg.interpolation, name
        assert build_model(name, num_classes=2).spec is spec
    from torchvision.transforms import InterpolationMode

    assert tuple(mode.value for mode in InterpolationMode) == INTERPOLATIONS


def test_unknown_architecture_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown architecture 'vgg16'"):
        build_model("vgg16", num_classes=2)


@pytest.mark.parametrize(
    ("arch", "size", "mean", "embedding_dim"),
    [
        ("efficientnet_b4_aux", 380, (0.485, 0.456, 0.406), 1792),
        ("efficientnet_b4", 380, (0.485, 0.456, 0.406), 1792),
        ("resnet101", 224, (0.485, 0.456, 0.406), 2048),
        ("inception_v3", 299, (0.5, 0.5, 0.5), 2048),
    ],
)
def test_spec_preprocessing_defaults(arch, size, mean, embedding_dim):
    spec = get_spec(arch)
    assert spec.input_size == size
    assert spec.mean == pytest.approx(mean)
    assert spec.interpolation == "bicubic"
    assert spec.colour_constancy
    assert spec.embedding_dim == embedding_dim


def test_uniform_interface(arch, model_for):
    model = model_for(arch)
    x = tiny_input(arch)
    with torch.inference_mode():
        out = model.forward_all(x)
        logits = model(x)
    assert isinstance(out, NetOutput)
    assert out.logits.shape == (2, NUM_CLASSES)
    assert out.embedding.shape == (2, get_spec(arch).embedding_dim)
    assert len(out.heads) == (8 if arch == "efficientnet_b4_aux" else 1)
    torch.testing.assert_close(logits, out.logits)


def test_every_parameter_is_in_exactly_one_unfreezing_stage(arch, model_for):
    model = model_for(arch)
    owners: dict[int, int] = {}
    for i, modules in enumerate(model.stage_modules()):
        for module in modules:
            for p in module.parameters():
                assert id(p) not in owners, "a parameter is in two stages"
                owners[id(p)] = i
    names = [n for n, p in model.named_parameters() if id(p) not in owners]
    assert names == []


def test_cam_layer_exists(arch, model_for):
    model = model_for(arch)
    assert isinstance(model.get_submodule(get_spec(arch).cam_layer), torch.nn.Module)


def test_aux_heads_sit_on_the_seven_block_stages(model_for):
    model = model_for("efficientnet_b4_aux")
    assert isinstance(model, AuxEfficientNet)
    assert stage_out_channels(model.backbone) == [24, 32, 56, 112, 160, 272, 448]
    assert [h.fc.in_features for h in model.aux_heads] == [24, 32, 56, 112, 160, 272, 448]
    assert model.backbone.classifier.in_features == 1792


def test_aux_logits_are_the_sum_of_the_eight_heads(model_for):
    model = model_for("efficientnet_b4_aux")
    with torch.inference_mode():
        out = model.forward_all(tiny_input("efficientnet_b4_aux"))
    assert len(out.heads) == 8
    torch.testing.assert_close(out.logits, sum(out.heads))
    # The heads are not trivially equal, so the sum is a real test.
    assert not torch.allclose(out.heads[0], out.heads[-1])


def test_aux_model_with_zeroed_aux_heads_equals_plain_timm_efficientnet(model_for):
    aux = copy.deepcopy(model_for("efficientnet_b4_aux"))
    torch.manual_seed(123)
    plain = timm.create_model("efficientnet_b4", num_classes=NUM_CLASSES)
    aux.backbone.load_state_dict(plain.state_dict())
    with torch.no_grad():
        for head in aux.aux_heads:
            head.fc.weight.zero_()
            head.fc.bias.zero_()
    x = tiny_input("efficientnet_b4_aux")
    aux.train()  # batch statistics: random-init eval-mode outputs are ~0 (see GOLDEN)
    with torch.inference_mode():
        out = aux.forward_all(x)
        expected_logits = plain(x)
        expected_embedding = plain.forward_head(plain.forward_features(x), pre_logits=True)
    torch.testing.assert_close(out.logits, expected_logits)
    torch.testing.assert_close(out.embedding, expected_embedding)
    assert expected_logits.abs().max() > 1e-3


def test_golden_output(arch, model_for):
    expected_row, expected_embedding_sum = GOLDEN[arch]
    model = copy.deepcopy(model_for(arch)).train()
    with torch.inference_mode():
        out = model.forward_all(tiny_input(arch))
    torch.testing.assert_close(out.logits[0], torch.tensor(expected_row), rtol=1e-3, atol=2e-4)
    assert out.embedding.sum().item() == pytest.approx(expected_embedding_sum, rel=1e-3, abs=1e-4)


def test_img_size_is_recorded_on_the_model():
    assert build_model("efficientnet_b4", num_classes=2, img_size=64).input_size == 64
